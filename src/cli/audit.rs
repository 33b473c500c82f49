//! `radassist audit`: the audit log (who read which patient data, when, from where), read from
//! the store without touching it: safe beside a live server. With `--uids`, the stored
//! instances whose UIDs are not DICOM UIDs (accepted before ingest checked them): the web app
//! shows their studies without links, and an administrator decides what to do with them.

use radassist::config::Config;

use radassist::dicom::uid::check_uid;
use radassist::store::Store;
use std::sync::Arc;

/// The store, read only: SQLite without crash recovery and without writes, so it is safe beside
/// a live server; PostgreSQL: a plain read.
fn open_read_only(config: &Config) -> Result<Arc<dyn Store>, String> {
    Ok(match config.store.backend {
        radassist::config::StoreBackend::Sqlite => Arc::new(
            radassist::store::SqliteStore::open_read_only(&config.service.data_dir)
                .map_err(|e| format!("{}: {e}", config.service.data_dir.display()))?,
        ),
        radassist::config::StoreBackend::Postgres => {
            radassist::store::open_store(config, radassist::store::Recovery::BesideServer)?
        }
    })
}

/// Prints each stored instance with a UID that is not a DICOM UID, with the rule it breaks;
/// a line saying there is none otherwise.
pub fn invalid_uids(config: &Config, json: bool) -> Result<(), String> {
    let store = open_read_only(config)?;
    let mut found = 0;
    for (study, series, sop) in store
        .instances_with_invalid_uids()
        .map_err(|e| e.to_string())?
    {
        let problems: Vec<(&str, &str, String)> = [
            ("Study Instance UID", &study),
            ("Series Instance UID", &series),
            ("SOP Instance UID", &sop),
        ]
        .into_iter()
        .filter_map(|(name, uid)| {
            check_uid(uid)
                .err()
                .map(|e| (name, uid.as_str(), e.to_string()))
        })
        .collect();
        if problems.is_empty() {
            continue;
        }
        found += 1;
        if json {
            let problems: Vec<_> = problems
                .iter()
                .map(|(name, _, why)| serde_json::json!({"attribute": name, "problem": why}))
                .collect();
            let line = serde_json::json!({
                "study_instance_uid": study,
                "series_instance_uid": series,
                "sop_instance_uid": sop,
                "problems": problems,
            });
            println!("{line}");
        } else {
            for (name, uid, why) in problems {
                println!(
                    "study {}  instance {}: {name} {}: {why}",
                    radassist::excerpt::excerpt(&study),
                    radassist::excerpt::excerpt(&sop),
                    radassist::excerpt::excerpt(uid)
                );
            }
        }
    }
    if !json {
        eprintln!(
            "{found} stored instance{} with a UID that is not a DICOM UID{}",
            if found == 1 { "" } else { "s" },
            if found == 0 {
                ""
            } else {
                " (PS3.5 9.1): the reading room lists their studies without links; ask the sender to correct them and send them again"
            }
        );
    }
    Ok(())
}

pub fn audit(
    config: &Config,
    since: Option<&str>,
    who: Option<&str>,
    json: bool,
) -> Result<(), String> {
    let since_ms = match since {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                format!("--since {text:?}: {e} (use RFC 3339, e.g. 2026-11-25T08:00:00Z)")
            })?
            .timestamp_millis(),
        None => 0,
    };
    let store = open_read_only(config)?;
    for row in store
        .audit_log(since_ms, who.unwrap_or(""))
        .map_err(|e| e.to_string())?
    {
        if json {
            println!("{}", serde_json::to_string(&row).expect("serialises"));
        } else {
            let at = chrono::DateTime::from_timestamp_millis(row.at_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            println!(
                "{at}  {:<16} {:<12} {:<20} {:<60} {}",
                row.who, row.role, row.action, row.resource, row.peer
            );
        }
    }
    Ok(())
}
