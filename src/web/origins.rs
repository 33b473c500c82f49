//! Which origins the reading room's pages are served from, for the login's cross-site check.
//!
//! A browser sends `Origin` with every cross-site POST; the login accepts a form only when
//! that origin is one of these. They come from the configuration, never from the request:
//! the `Host` header is the client's to choose, and a page on another site (reached by DNS
//! rebinding, say) can make a browser send the same name in both. The set is the listener's
//! own address (with `localhost` and the loopback addresses when it listens on loopback) and
//! each of `web.origins`, the names people actually type (`https://radassist.example.org`).

/// The origins the login accepts, each as `scheme://host[:port]` in lower case.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    /// The origins of a listener on `local` (what it bound), its scheme `https` when `tls`,
    /// and the configured `extra` ones; an extra that is not an origin is an error.
    pub fn new(
        local: std::net::SocketAddr,
        tls: bool,
        extra: &[String],
    ) -> Result<Origins, String> {
        let scheme = if tls { "https" } else { "http" };
        let port = local.port();
        let mut hosts = vec![match local.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        }];
        if local.ip().is_loopback() {
            hosts.extend(["localhost".into(), "127.0.0.1".into(), "[::1]".into()]);
        }
        let mut origins = Origins(Vec::new());
        for host in hosts {
            origins.add(scheme, &host, port);
        }
        for text in extra {
            let (scheme, host, port) = parse(text).ok_or_else(|| {
                format!(
                    "web.origins: {text:?} is not an origin: write scheme://host or scheme://host:port (http or https, no path)"
                )
            })?;
            origins.add(scheme, &host, port);
        }
        Ok(origins)
    }

    /// Adds `scheme://host:port`, and `scheme://host` when the port is the scheme's default
    /// (browsers leave it out then).
    fn add(&mut self, scheme: &str, host: &str, port: u16) {
        let host = host.to_ascii_lowercase();
        self.0.push(format!("{scheme}://{host}:{port}"));
        if (scheme, port) == ("http", 80) || (scheme, port) == ("https", 443) {
            self.0.push(format!("{scheme}://{host}"));
        }
    }

    /// Whether a request with this `Origin` header (None: no header, as from a same-origin
    /// navigation in older browsers and from scripts) may log in.
    pub fn allow(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => self.0.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// Each of `texts` as a browser sends it in `Origin` (lower case, the port only when it is not
/// the scheme's default), for matching it exactly; `key` names the setting in the error.
pub fn parse_all(texts: &[String], key: &str) -> Result<Vec<String>, String> {
    texts
        .iter()
        .map(|text| {
            let (scheme, host, port) = parse(text).ok_or_else(|| {
                format!("{key}: {text:?} is not an origin: write scheme://host or scheme://host:port (http or https, no path)")
            })?;
            let host = host.to_ascii_lowercase();
            Ok(match (scheme, port) {
                ("http", 80) | ("https", 443) => format!("{scheme}://{host}"),
                _ => format!("{scheme}://{host}:{port}"),
            })
        })
        .collect()
}

/// `[web] public_url` checked: None when empty; else an http(s) origin, with a path when a
/// proxy serves radassist under one, without its trailing slash.
pub fn public_url(text: &str) -> Result<Option<String>, String> {
    let text = text.trim().trim_end_matches('/');
    if text.is_empty() {
        return Ok(None);
    }
    let refuse = || {
        format!(
            "web.public_url: {text:?} is not an address clients reach radassist at: write scheme://host[:port][/path] (http or https, no query)"
        )
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(refuse)?;
    let (origin, path) = rest.split_once('/').map_or((rest, ""), |(o, p)| (o, p));
    parse(&format!("{scheme}://{origin}")).ok_or_else(refuse)?;
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    if !path_ok {
        return Err(refuse());
    }
    Ok(Some(text.to_string()))
}

/// `scheme://host[:port]` -> (scheme, host, port); None for anything else.
fn parse(text: &str) -> Option<(&'static str, String, u16)> {
    let (scheme, rest) = text.split_once("://")?;
    let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "http" => ("http", 80),
        "https" => ("https", 443),
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty()
        || rest
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
    {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (rest, default_port),
    };
    (!host.is_empty()).then(|| (scheme, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_and_the_configured_names_are_allowed_and_nothing_else() {
        let local = "127.0.0.1:8080".parse().unwrap();
        let origins =
            Origins::new(local, false, &["https://radassist.example.org".into()]).unwrap();
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://radassist.example.org",
            "https://radassist.example.org:443",
            "HTTPS://RADASSIST.example.org",
        ] {
            assert!(origins.allow(Some(ok)), "{ok}");
        }
        for refused in [
            "http://evil.example",
            "http://evil.example:8080",
            "https://127.0.0.1:8080",
            "http://localhost:8081",
            "null",
        ] {
            assert!(!origins.allow(Some(refused)), "{refused}");
        }
        assert!(origins.allow(None));
    }

    #[test]
    fn the_public_url_is_an_origin_with_perhaps_a_path() {
        assert_eq!(public_url("").unwrap(), None);
        assert_eq!(
            public_url("https://ra.example.org:8443/radassist/")
                .unwrap()
                .as_deref(),
            Some("https://ra.example.org:8443/radassist")
        );
        for bad in [
            "ra.example.org",
            "ftp://ra.example.org",
            "https://ra.example.org/?x=1",
            "https://<b>/",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_origin_with_a_path_is_a_configuration_error() {
        let local = "127.0.0.1:8080".parse().unwrap();
        let e =
            Origins::new(local, true, &["https://radassist.example.org/app".into()]).unwrap_err();
        assert!(e.contains("not an origin"), "{e}");
        assert!(Origins::new(local, true, &["ftp://x".into()]).is_err());
        assert!(Origins::new(local, true, &["https://[::1]:8443".into()]).is_ok());
    }
}
