//! DICOMweb by hand: raw HTTP exchanges with binary bodies, and STOW-RS requests built here, for
//! the bodies no well-behaved client sends and for tests that only need a store.

use serde_json::Value;
use std::io::{Read, Write};

/// One HTTP/1.1 exchange with a binary body: (status, head, body).
pub fn exchange(
    web: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let address = web.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A server may answer (and close) before the whole body is sent.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

/// A multipart/related body of `parts` (each its part headers and bytes) around `boundary`.
pub fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The Content-Type of the tests' STOW-RS requests.
pub const STOW_TYPE: &str =
    "multipart/related; type=\"application/dicom\"; boundary=radassist-test";

/// A STOW-RS of `body` (built by [`multipart`] with the boundary `radassist-test`), as `token`'s.
pub fn stow(web: &str, token: &str, body: &[u8]) -> (u16, String, Value) {
    let bearer = format!("Bearer {token}");
    let (status, head, body) = exchange(
        web,
        "POST",
        "/dicomweb/studies",
        &[
            ("Content-Type", STOW_TYPE),
            ("Authorization", &bearer),
            ("Accept", "application/dicom+json"),
        ],
        body,
    );
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, head, json)
}
