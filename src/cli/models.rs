//! `radassist runtime`, `models`, `embed-text`, `predict` and `report`: ONNX Runtime and the
//! model packs, each task run alone on files.

use radassist::dicom::{self, DecodeLimits};
use radassist::inference::manifest::{Manifest, Task};
use radassist::inference::report::{PriorStudy, ReportModel, ReportRequest};
use radassist::inference::session::SessionSettings;
use radassist::inference::{pack_folders, ModelPack, TEST_MODEL_WARNING};
use std::path::{Path, PathBuf};

pub fn runtime() -> Result<(), String> {
    let runtime = radassist::runtime::load().map_err(|e| e.to_string())?;
    println!("ONNX Runtime loaded from {}", runtime.library.display());
    println!("{}", runtime.build_info);
    Ok(())
}

pub fn models_list(models: &Path) -> Result<(), String> {
    let folders = pack_folders(models).map_err(|e| format!("{}: {e}", models.display()))?;
    if folders.is_empty() {
        return Err(format!(
            "no model packs (folders with a model.toml) in {}",
            models.display()
        ));
    }
    for folder in folders {
        match Manifest::read(&folder.join("model.toml")) {
            Ok(m) => println!(
                "{:<16} {:<15} {:<40} {}{}",
                m.name,
                serde_json::to_value(m.task)
                    .expect("serialises")
                    .as_str()
                    .unwrap_or("?"),
                m.version,
                m.licence,
                if m.test_model {
                    format!(" ({TEST_MODEL_WARNING})")
                } else {
                    String::new()
                }
            ),
            Err(e) => println!("{:<16} invalid: {e}", folder.display()),
        }
    }
    Ok(())
}

pub fn models_check(models: &Path, settings: &SessionSettings) -> Result<(), String> {
    let folders = pack_folders(models).map_err(|e| format!("{}: {e}", models.display()))?;
    if folders.is_empty() {
        return Err(format!(
            "no model packs (folders with a model.toml) in {}",
            models.display()
        ));
    }
    let mut failed = 0;
    for folder in &folders {
        let is_report =
            Manifest::read(&folder.join("model.toml")).is_ok_and(|m| m.task == Task::Report);
        let outcome = if is_report {
            ReportModel::load(folder, settings).and_then(|mut model| {
                let warm_up = model.warm_up()?;
                Ok((model.manifest.clone(), model.provider, warm_up))
            })
        } else {
            ModelPack::load(folder, settings).and_then(|mut pack| {
                let warm_up = pack.warm_up()?;
                Ok((pack.manifest.clone(), pack.provider, warm_up))
            })
        };
        match outcome {
            Ok((manifest, provider, warm_up)) => println!(
                "ok      {:<16} provider {:?}, warm-up {:.1} ms{}",
                manifest.name,
                provider,
                warm_up.as_secs_f64() * 1e3,
                if manifest.test_model {
                    format!(" ({TEST_MODEL_WARNING})")
                } else {
                    String::new()
                }
            ),
            Err(e) => {
                failed += 1;
                println!("FAILED  {}: {e}", folder.display());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} model packs failed the check",
            folders.len()
        )),
    }
}

pub fn embed_text(
    pack: &Path,
    settings: &SessionSettings,
    sentences: &[String],
) -> Result<(), String> {
    let pack = ModelPack::load(pack, settings).map_err(|e| e.to_string())?;
    let mut embedder =
        radassist::inference::text::TextEmbedder::new(pack).map_err(|e| e.to_string())?;
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let embeddings = embedder.embed(&refs).map_err(|e| e.to_string())?;
    let test_model = embedder.pack().manifest.test_model;
    for (sentence, row) in sentences.iter().zip(embeddings.rows()) {
        let mut line = serde_json::json!({ "text": sentence, "embedding": row.to_vec() });
        if test_model {
            line["warning"] = TEST_MODEL_WARNING.into();
        }
        println!("{line}");
    }
    Ok(())
}

/// Each structure's probabilities of each film as a 16-bit grey PNG in `dir`.
fn write_masks(
    masks: &[radassist::inference::vision::Masks],
    files: &[PathBuf],
    dir: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (file, masks) in files.iter().zip(masks) {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        for (structure, probabilities) in &masks.structures {
            let name = serde_json::to_value(structure).map_err(|e| e.to_string())?;
            let (h, w) = probabilities.dim();
            let png = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(
                w as u32,
                h as u32,
                |x, y| {
                    let p = probabilities[(y as usize, x as usize)].clamp(0.0, 1.0);
                    image::Luma([(p * 65535.0).round() as u16])
                },
            );
            let path = dir.join(format!("{stem}.{}.png", name.as_str().unwrap_or("mask")));
            png.save(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

pub fn predict(
    pack: &Path,
    settings: &SessionSettings,
    files: &[PathBuf],
    masks: Option<&Path>,
) -> Result<(), String> {
    use radassist::inference::vision::ImageModel;
    let folder = pack;
    let pack = ModelPack::load(folder, settings).map_err(|e| e.to_string())?;
    let (task, test_model) = (pack.manifest.task, pack.manifest.test_model);
    let mut model = ImageModel::new(pack).map_err(|e| e.to_string())?;
    let limits = DecodeLimits::default();
    let radiographs = files
        .iter()
        .map(|f| dicom::read_file(f, &limits).map_err(|e| format!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let batch: Vec<_> = radiographs.iter().collect();
    if masks.is_some() && task != Task::Segmentation {
        return Err(format!(
            "--masks is for segmentation packs; {} is a {task:?} pack",
            folder.display()
        ));
    }
    let landmark_lines = |found: Vec<Vec<radassist::inference::vision::Landmark>>| {
        found
            .iter()
            .map(|l| serde_json::json!({ "landmarks": l }))
            .collect::<Vec<_>>()
    };
    let failed = |e: radassist::inference::InferenceError| e.to_string();
    let results: Vec<serde_json::Value> = match task {
        Task::Findings => model
            .findings(&batch)
            .map_err(failed)?
            .iter()
            .map(|f| serde_json::json!({ "findings": f }))
            .collect(),
        Task::Landmarks => landmark_lines(model.landmarks(&batch).map_err(failed)?),
        Task::Segmentation => {
            // The masks once: written when asked for, and the landmarks derived from them.
            let prepared = model.prepare(&batch);
            let found = model.masks_of(&prepared).map_err(failed)?;
            if let Some(dir) = masks {
                write_masks(&found, files, dir)?;
            }
            landmark_lines(found.iter().map(radassist::segmentation::derive).collect())
        }
        _ => model
            .embeddings(&batch)
            .map_err(failed)?
            .rows()
            .into_iter()
            .map(|row| serde_json::json!({ "embedding": row.to_vec() }))
            .collect(),
    };
    for (file, mut result) in files.iter().zip(results) {
        result["file"] = file.display().to_string().into();
        if test_model {
            result["warning"] = TEST_MODEL_WARNING.into();
        }
        println!("{result}");
    }
    Ok(())
}

pub fn report(
    pack: &Path,
    settings: &SessionSettings,
    file: &Path,
    indication: &str,
    prior: Option<&(PathBuf, String)>,
    beams: usize,
) -> Result<(), String> {
    let mut model = ReportModel::load(pack, settings).map_err(|e| e.to_string())?;
    let read = |f: &Path| {
        dicom::read_file(f, &DecodeLimits::default()).map_err(|e| format!("{}: {e}", f.display()))
    };
    let image = read(file)?;
    let prior_image = prior.map(|(path, _)| read(path)).transpose()?;
    let prior = prior_image
        .as_ref()
        .zip(prior)
        .map(|(image, (_, report))| PriorStudy { image, report });
    let request = [ReportRequest {
        image: &image,
        indication,
        prior,
    }];
    let draft = match beams {
        0 => return Err("--beams must be at least 1".into()),
        1 => model.generate_greedy(&request, true),
        n => model.generate_beam(&request, n),
    }
    .map_err(|e| e.to_string())?
    .remove(0);
    let mut out = serde_json::json!({ "file": file.display().to_string(), "draft": draft, "preliminary": true });
    if model.manifest.test_model {
        out["warning"] = TEST_MODEL_WARNING.into();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("serialises")
    );
    Ok(())
}
