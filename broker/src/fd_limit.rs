//! The open-file limit. A node holds a descriptor for each partition it keeps a log of and
//! each client connection, so the usual soft limit of 1024 runs out at a few hundred
//! partitions. Kafka leaves raising it to the service manager (`LimitNOFILE`, `ulimit -n`);
//! Gregor raises the soft limit to the hard limit itself at start-up, which any process may
//! do, and logs both.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The open-file limits before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft limit the process started with (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. An error (the kernel refusing) leaves
/// the limit as it was.
pub fn raise() -> std::io::Result<Limits> {
    let start = getrlimit(Resource::Nofile);
    if start.current != start.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: start.maximum,
                maximum: start.maximum,
            },
        )?;
    }
    let now = getrlimit(Resource::Nofile);
    Ok(Limits {
        before: start.current,
        soft: now.current,
        hard: now.maximum,
    })
}

/// Raises the limit and logs what it is, as a node starts.
pub fn raise_and_log() {
    let shown = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    match raise() {
        Ok(l) if l.before != l.soft => tracing::info!(
            "open-file limit raised from {} to the hard limit {}",
            shown(l.before),
            shown(l.hard)
        ),
        Ok(l) => tracing::info!(
            "open-file limit {} (hard limit {})",
            shown(l.soft),
            shown(l.hard)
        ),
        Err(e) => {
            let l = getrlimit(Resource::Nofile);
            tracing::warn!(
                error = %e,
                "open-file limit {} could not be raised to the hard limit {}",
                shown(l.current),
                shown(l.maximum)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        // Lowered by one only, so the other tests of this process never run short.
        let start = getrlimit(Resource::Nofile);
        let Some(hard) = start.maximum else {
            return; // unlimited: nothing to raise to
        };
        let lower = hard - 1;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(lower),
                maximum: start.maximum,
            },
        )
        .expect("lowering the soft limit");
        let limits = raise().expect("raise");
        assert_eq!(limits.before, Some(lower));
        assert_eq!(limits.soft, Some(hard));
        assert_eq!(limits.hard, Some(hard));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }
}
