//! `radassist audit`: the audit log (who read which patient data, when, from where), read from
//! the store without touching it: safe beside a live server.

use radassist::config::Config;

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
    use radassist::service::store::Store;
    // SQLite read-only: no crash recovery and no write, so it is safe beside a live server;
    // PostgreSQL: a plain read.
    let store: std::sync::Arc<dyn Store> = match config.store.backend {
        radassist::config::StoreBackend::Sqlite => std::sync::Arc::new(
            radassist::service::store::SqliteStore::open_read_only(&config.service.data_dir)
                .map_err(|e| format!("{}: {e}", config.service.data_dir.display()))?,
        ),
        radassist::config::StoreBackend::Postgres => radassist::service::store::open_store(
            config,
            radassist::service::store::Recovery::BesideServer,
        )?,
    };
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
