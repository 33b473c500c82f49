//! Passwords: argon2id hashes (the RustCrypto `argon2` crate, its default parameters: 19 MiB,
//! 2 passes, 1 lane, OWASP's minimum), kept as PHC strings so that stronger parameters later
//! still verify the old hashes; and the rules a new password must meet.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};

/// Shortest password accepted (NIST SP 800-63B asks at least 8; a reading room holds PHI).
pub const MIN_LENGTH: usize = 12;
/// Longest (a bound on the hashing work a login may ask for).
pub const MAX_LENGTH: usize = 1024;

/// Why a new password is refused, in words for the administrator.
pub fn check_new(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "the password has {length} characters: at least {MIN_LENGTH} are needed"
        ));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!("the password is longer than {MAX_LENGTH} bytes"));
    }
    Ok(())
}

/// The argon2id hash of `password`, as a PHC string.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// Whether `password` matches `phc` (a malformed hash matches nothing).
pub fn verify(phc: &str, password: &str) -> bool {
    if password.len() > MAX_LENGTH {
        return false;
    }
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of no one's password, verified when the name is unknown, so that a login takes as
/// long whether or not the name exists.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password, never a user's").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_and_verifies_only_its_password() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "correct horse battery"));
        assert!(!verify(&h, "correct horse batterY"));
        assert!(!verify("not a hash", "correct horse battery"));
        assert!(check_new("short").is_err());
        assert!(check_new("twelve chars").is_ok());
    }
}
