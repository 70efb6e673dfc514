//! Line reading for the KG files: plain or gzip (`.gz` suffix), UTF-8, LF
//! line ends, TAB-separated cells. Every error names the file and line.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use kogner_tensor::{Error, Result};

/// Reads the whole file (gunzipped when its name ends in `.gz`) as UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(BufReader::new(GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        Error::file(path, format!("line {line}: invalid UTF-8"))
    })
}

/// The file's lines with 1-based line numbers (a trailing `\r` is an error:
/// the format is LF-only and a stray CR would end up inside the last cell).
pub(crate) fn lines<'a>(
    path: &'a Path,
    text: &'a str,
) -> impl Iterator<Item = Result<(usize, &'a str)>> + 'a {
    text.lines().enumerate().map(move |(i, line)| {
        if line.ends_with('\r') {
            Err(Error::file(
                path,
                format!("line {}: CR line end (the format is LF only)", i + 1),
            ))
        } else {
            Ok((i + 1, line))
        }
    })
}

/// Splits a line into exactly `n` TAB-separated cells.
pub(crate) fn cells<'a>(
    path: &Path,
    line_no: usize,
    line: &'a str,
    n: usize,
) -> Result<Vec<&'a str>> {
    let cells: Vec<&str> = line.split('\t').collect();
    if cells.len() != n {
        return Err(Error::file(
            path,
            format!(
                "line {line_no}: expected {n} TAB-separated cells, found {}",
                cells.len()
            ),
        ));
    }
    Ok(cells)
}

/// Checks the header line (line 1) of a file that must have one.
pub(crate) fn expect_header(
    path: &Path,
    first: Option<Result<(usize, &str)>>,
    want: &[&str],
) -> Result<()> {
    let (_, line) =
        first.ok_or_else(|| Error::file(path, "line 1: empty file (expected a header line)"))??;
    if line.split('\t').ne(want.iter().copied()) {
        return Err(Error::file(
            path,
            format!("line 1: header {line:?}, expected {:?}", want.join("\t")),
        ));
    }
    Ok(())
}

/// `dir/name` if it exists, else `dir/name.gz`; an error naming both if neither does.
pub(crate) fn plain_or_gz(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::file(
        dir,
        format!("neither {name} nor {name}.gz exists"),
    ))
}
