//! uid/gid mappings between the image's ids and the ids the kernel sees, in the
//! `CONTAINER:HOST:SIZE` form of podman's `--uidmap`.

use std::fmt;

/// The id shown for an image id that no range maps (the kernel's overflow id).
pub const OVERFLOW: u32 = 65534;

/// One `CONTAINER:HOST:SIZE` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// A set of ranges; empty means identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    ranges: Vec<Range>,
}

/// Why a mapping was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdMapError {
    #[error("bad id mapping {0:?}: expected CONTAINER:HOST:SIZE, e.g. 0:1000:1")]
    Syntax(String),
    #[error("id mapping {0:?} overlaps an earlier range")]
    Overlap(String),
}

impl IdMap {
    /// Identity: every id is shown as itself.
    pub fn identity() -> IdMap {
        IdMap::default()
    }

    /// Parses `CONTAINER:HOST:SIZE` strings, one range each.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<IdMap, IdMapError> {
        let mut ranges: Vec<Range> = Vec::new();
        for spec in specs {
            let spec = spec.as_ref();
            let parts: Vec<&str> = spec.split(':').collect();
            let nums: Option<Vec<u32>> = match parts.as_slice() {
                [c, h, s] => [c, h, s].iter().map(|p| p.trim().parse().ok()).collect(),
                _ => None,
            };
            let Some([container, host, size]) = nums.as_deref().map(|n| [n[0], n[1], n[2]]) else {
                return Err(IdMapError::Syntax(spec.to_owned()));
            };
            if size == 0
                || container.checked_add(size - 1).is_none()
                || host.checked_add(size - 1).is_none()
            {
                return Err(IdMapError::Syntax(spec.to_owned()));
            }
            let r = Range {
                container,
                host,
                size,
            };
            let overlaps = ranges.iter().any(|o| {
                spans_overlap(o.container, o.size, r.container, r.size)
                    || spans_overlap(o.host, o.size, r.host, r.size)
            });
            if overlaps {
                return Err(IdMapError::Overlap(spec.to_owned()));
            }
            ranges.push(r);
        }
        Ok(IdMap { ranges })
    }

    /// True when every id maps to itself.
    pub fn is_identity(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The host id that shows image id `id`; [`OVERFLOW`] when unmapped.
    pub fn to_host(&self, id: u32) -> u32 {
        if self.ranges.is_empty() {
            return id;
        }
        self.ranges
            .iter()
            .find(|r| id >= r.container && id - r.container < r.size)
            .map(|r| r.host + (id - r.container))
            .unwrap_or(OVERFLOW)
    }

    /// The image id a host id stands for, if any range maps it.
    pub fn to_container(&self, id: u32) -> Option<u32> {
        if self.ranges.is_empty() {
            return Some(id);
        }
        self.ranges
            .iter()
            .find(|r| id >= r.host && id - r.host < r.size)
            .map(|r| r.container + (id - r.host))
    }
}

fn spans_overlap(a: u32, alen: u32, b: u32, blen: u32) -> bool {
    let (a, alen, b, blen) = (a as u64, alen as u64, b as u64, blen as u64);
    a < b + blen && b < a + alen
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("identity");
        }
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}:{}", r.container, r.host, r.size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let m = IdMap::parse(&["0:1000:1", "1:100000:65536"]).unwrap();
        assert_eq!(m.to_host(0), 1000);
        assert_eq!(m.to_host(5), 100004);
        assert_eq!(m.to_host(70000), OVERFLOW);
        assert_eq!(m.to_container(1000), Some(0));
        assert_eq!(m.to_container(100004), Some(5));
        assert_eq!(m.to_container(7), None);
        assert_eq!(IdMap::identity().to_host(42), 42);
        assert_eq!(m.to_string(), "0:1000:1,1:100000:65536");
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "",
            "0:1000",
            "a:b:c",
            "0:1000:0",
            "0:4294967295:2",
            "0:1:2:3",
        ] {
            assert!(
                matches!(IdMap::parse(&[bad]), Err(IdMapError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            IdMap::parse(&["0:1000:10", "5:2000:1"]),
            Err(IdMapError::Overlap(_))
        ));
    }
}
