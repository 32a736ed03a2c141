//! Image references, normalised the way docker does:
//! `busybox` → `docker.io/library/busybox:latest`, `host:port/repo:tag`, `repo@sha256:…`.

use oci_client::Reference;

/// A reference that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason} (expected [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. debian:bookworm)")]
pub struct RefError {
    pub input: String,
    pub reason: String,
}

/// Parses and normalises an image reference; a reference with neither tag nor digest gets
/// `:latest`.
pub fn parse(input: &str) -> Result<Reference, RefError> {
    let bad = |reason: String| RefError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if input.chars().any(|c| c.is_whitespace()) {
        return Err(bad("it contains white space".into()));
    }
    let r: Reference = input.parse().map_err(|e| bad(format!("{e}")))?;
    if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad("repository name must be lowercase".into()));
    }
    if r.tag().is_none() && r.digest().is_none() {
        return Ok(Reference::with_tag(
            r.registry().to_owned(),
            r.repository().to_owned(),
            "latest".to_owned(),
        ));
    }
    Ok(r)
}

/// The name a user sees for a reference: `registry/repo:tag` or `registry/repo@digest`.
pub fn display(r: &Reference) -> String {
    r.whole()
}

/// `registry/repository`, without tag or digest.
pub fn repository(r: &Reference) -> String {
    format!("{}/{}", r.registry(), r.repository())
}

/// True for registries on this machine, which are reached over plain HTTP.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        assert_eq!(
            display(&parse("busybox").unwrap()),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            display(&parse("user/app:1.0").unwrap()),
            "docker.io/user/app:1.0"
        );
        let r = parse("127.0.0.1:5000/demo/debian:12").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "demo/debian");
        assert_eq!(r.tag(), Some("12"));
        let d = format!("localhost:5000/x@sha256:{}", "a".repeat(64));
        let r = parse(&d).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(str::len), Some(71));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "repo:tag:tag",
            "x@sha256:123",
            "repo:",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid image reference"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
