//! An error with the chain of its causes, in one line, for the log and for the reasons an
//! operator reads ("error performing TLS handshake: invalid peer certificate: UnknownIssuer").
//! A cause whose text its error already carries is not repeated.

/// `error: cause: cause's cause`, each once.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("reading the catalogue")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("opening: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(
            super::with_causes(&Outer(io())),
            "reading the catalogue: disk full"
        );
        assert_eq!(super::with_causes(&Repeats(io())), "opening: disk full");
    }
}
