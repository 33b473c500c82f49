//! The site's annotated points for a landmarks pack's acceptance test: a CSV read strictly,
//! one row per landmark per image.
//!
//! ```text
//! image,landmark,x,y
//! 1.2.826.0.1.3680043.2.1125.7,carina,1024.5,812
//! 1.2.826.0.1.3680043.2.1125.7,ett_tip,1019,655.5
//! 1.2.826.0.1.3680043.2.1125.8,ett_tip,,
//! ```
//!
//! The first column names the film: `image` (its SOP Instance UID), or `study` (a Study
//! Instance UID or Accession Number, for studies of one film). `x` is the column and `y` the
//! row in the stored image's pixels, 0-based, pixel centres at whole numbers (the top-left
//! pixel's centre is 0,0), as the service reports landmarks. Both empty: the annotator says the
//! landmark is not on the film (no tube), which counts a detection there as a false one. A
//! landmark not in the file for a film is not annotated there and not measured.
//!
//! A bad row never stops the run: it is left out with a message saying what was wrong and where
//! (a coordinate that is not a number, one of the two missing, a landmark annotated twice on a
//! film), and the rest is used. Points outside the image and landmarks the pack does not find
//! are told when the films are known ([`super::landmarks`]).

use std::collections::BTreeMap;
use std::path::Path;

/// What the first column names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilmKey {
    /// A SOP Instance UID.
    Image,
    /// A Study Instance UID or Accession Number (a study of one film).
    Study,
}

/// An annotated point in image pixels (column, row), or None: annotated as not on the film.
pub type Point = Option<(f64, f64)>;

/// The annotations read: per film key, per landmark, its point; and what was left out.
#[derive(Debug)]
pub struct Annotations {
    pub key: FilmKey,
    pub points: BTreeMap<String, BTreeMap<String, Point>>,
    pub problems: Vec<String>,
}

/// Why the annotations cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    #[error("the annotations file {path} cannot be read: {source}")]
    Read {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error("the annotations file {0} must have the columns image,landmark,x,y (or study,landmark,x,y for studies of one film): x the column and y the row in pixels, both empty for a landmark not on the film")]
    Columns(String),
}

fn coordinate(cell: &str, what: &str, line: usize) -> Result<Option<f64>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!(
            "line {line}: {what} is {cell:?}, not a number of pixels; the row is left out"
        )),
    }
}

/// One row's film key, landmark and point, or why it is left out.
fn row(record: &csv::StringRecord, line: usize) -> Result<(String, String, Point), String> {
    if record.len() != 4 {
        return Err(format!(
            "line {line}: {} fields where the header has 4; left out",
            record.len()
        ));
    }
    let (film, landmark) = (record[0].to_string(), record[1].to_string());
    if film.is_empty() || landmark.is_empty() {
        return Err(format!("line {line}: no film or no landmark; left out"));
    }
    let x = coordinate(&record[2], "x", line)?;
    let y = coordinate(&record[3], "y", line)?;
    let point = match (x, y) {
        (Some(x), Some(y)) => Some((x, y)),
        (None, None) => None,
        _ => {
            return Err(format!(
                "line {line}: {landmark} has one coordinate without the other (both, or both empty for \"not on the film\"); left out"
            ))
        }
    };
    Ok((film, landmark, point))
}

/// Reads the annotations file at `path`.
pub fn read(path: &Path) -> Result<Annotations, PointsError> {
    let shown = path.display().to_string();
    let read_error = |source| PointsError::Read {
        path: shown.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(read_error)?;
    let header = reader.headers().map_err(read_error)?.clone();
    let names: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    let key = match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["image", "landmark", "x", "y"] => FilmKey::Image,
        ["study", "landmark", "x", "y"] => FilmKey::Study,
        _ => return Err(PointsError::Columns(shown)),
    };
    let mut annotations = Annotations {
        key,
        points: BTreeMap::new(),
        problems: Vec::new(),
    };
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let parsed = record
            .map_err(|e| format!("line {line}: {e}; left out"))
            .and_then(|record| row(&record, line));
        let (film, landmark, point) = match parsed {
            Ok(parsed) => parsed,
            Err(problem) => {
                annotations.problems.push(problem);
                continue;
            }
        };
        let film_points = annotations.points.entry(film.clone()).or_default();
        if film_points.contains_key(&landmark) {
            annotations.problems.push(format!(
                "line {line}: {landmark} on {film} is annotated again; its first row is kept"
            ));
            continue;
        }
        film_points.insert(landmark, point);
    }
    Ok(annotations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Annotations, PointsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("points.csv");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn bad_rows_are_left_out_with_their_line_and_the_rest_is_read() {
        let a = read_text(
            "image,landmark,x,y\n1.1,carina,10.5,20\n1.1,ett_tip,,\n1.1,carina,1,1\n1.2,carina,ten,3\n1.2,ett_tip,4,\n1.2,cvc_tip,NaN,2\n1.3,carina,1\n,carina,1,2\n",
        )
        .unwrap();
        assert_eq!(a.key, FilmKey::Image);
        assert_eq!(a.points["1.1"]["carina"], Some((10.5, 20.0)));
        assert_eq!(a.points["1.1"]["ett_tip"], None);
        assert_eq!(a.points.len(), 1);
        let problems = a.problems.join("\n");
        for expected in [
            "line 4: carina on 1.1 is annotated again",
            "line 5: x is \"ten\"",
            "line 6: ett_tip has one coordinate without the other",
            "line 7: x is \"NaN\"",
            "line 8: 3 fields where the header has 4",
            "line 9: no film or no landmark",
        ] {
            assert!(problems.contains(expected), "{expected} not in\n{problems}");
        }
    }

    #[test]
    fn the_columns_are_checked_and_study_keys_accepted() {
        assert_eq!(
            read_text("study,landmark,x,y\nA1,carina,1,2\n")
                .unwrap()
                .key,
            FilmKey::Study
        );
        let e = read_text("study,Edema\nA1,1\n").unwrap_err();
        assert!(e.to_string().contains("image,landmark,x,y"), "{e}");
    }
}
