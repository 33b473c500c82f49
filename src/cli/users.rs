//! `radassist users`: the people who log in to the web reading room. They are kept in the
//! service's store (argon2id hashes), so these commands open the store the configuration names,
//! without crash recovery: SQLite's locking (or PostgreSQL) makes that safe beside a running
//! server.

use radassist::config::Config;
use radassist::roles::Role;
use radassist::store::reading_room::UserRow;
use radassist::store::{now_ms, open_store, Recovery, Store};
use radassist::web::passwords;
use std::sync::Arc;

/// The roles a person can have (a PACS is a machine: it gets a bearer token, not a login).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WebRole {
    Radiologist,
    Qa,
    Admin,
}

impl WebRole {
    fn role(self) -> Role {
        match self {
            WebRole::Radiologist => Role::Radiologist,
            WebRole::Qa => Role::Qa,
            WebRole::Admin => Role::Admin,
        }
    }
}

fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    open_store(config, Recovery::BesideServer)
}

pub fn add(config: &Config, name: &str, role: WebRole, password_stdin: bool) -> Result<(), String> {
    radassist::web::session::check_login_name(name)?;
    if !password_stdin {
        return Err(
            "give the password on standard input with --password-stdin (never as an argument)"
                .into(),
        );
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']);
    passwords::check_new(password)?;
    let user = UserRow {
        name: name.to_string(),
        role: role.role(),
        password_hash: passwords::hash(password)?,
        disabled: false,
        created_at: now_ms(),
    };
    open(config)?.add_user(&user).map_err(|e| e.to_string())?;
    println!("added {name} ({})", user.role.as_str());
    Ok(())
}

pub fn list(config: &Config) -> Result<(), String> {
    for u in open(config)?.users().map_err(|e| e.to_string())? {
        let since = chrono::DateTime::from_timestamp_millis(u.created_at)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        println!(
            "{:<24} {:<12} {:<9} since {since}",
            u.name,
            u.role.as_str(),
            if u.disabled { "disabled" } else { "active" }
        );
    }
    Ok(())
}

pub fn set_disabled(config: &Config, name: &str, disabled: bool) -> Result<(), String> {
    open(config)?
        .set_user_disabled(name, disabled)
        .map_err(|e| e.to_string())?;
    println!("{name} {}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}
