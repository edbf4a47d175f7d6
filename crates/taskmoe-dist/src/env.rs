//! torchrun's environment: who this process is and where the rendezvous lives.

use std::net::TcpListener;
use std::time::Duration;

use crate::error::{DistError, Result};

/// Environment variable with the collective timeout in seconds (see [`DEFAULT_TIMEOUT_SECS`]).
pub const TIMEOUT_ENV: &str = "TASKMOE_DIST_TIMEOUT";
/// How long a rendezvous or a collective waits for the other ranks by default: long enough for
/// a slow rank's evaluation, short enough that a dead rank stops the run in minutes.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// One process's place in a job, as torchrun (and `cargo xtask train --nproc`) sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// Global rank, `0..world_size` (`RANK`).
    pub rank: usize,
    /// Number of processes (`WORLD_SIZE`).
    pub world_size: usize,
    /// Rank on this node (`LOCAL_RANK`; picks the GPU on multi-GPU nodes).
    pub local_rank: usize,
    /// Host of rank 0's TCPStore (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of rank 0's TCPStore (`MASTER_PORT`).
    pub master_port: u16,
    /// Bound on the rendezvous and on every collective (`TASKMOE_DIST_TIMEOUT`, seconds).
    pub timeout: Duration,
}

fn read(var: &'static str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| DistError::Env {
        var,
        reason: format!("`{value}` is not a non-negative integer"),
    })
}

impl DistEnv {
    /// Reads torchrun's variables: `None` when `WORLD_SIZE` is unset (a plain single-process
    /// run); an error naming the variable when one is missing or malformed.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(world) = read("WORLD_SIZE") else {
            return Ok(None);
        };
        let need = |var: &'static str| {
            read(var).ok_or(DistError::Env {
                var,
                reason: "not set (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and \
                         MASTER_PORT together)"
                    .to_string(),
            })
        };
        let world_size: usize = number("WORLD_SIZE", &world)?;
        let rank: usize = number("RANK", &need("RANK")?)?;
        let local_rank = match read("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_addr = need("MASTER_ADDR")?;
        let master_port: u16 = number("MASTER_PORT", &need("MASTER_PORT")?)?;
        let secs = match read(TIMEOUT_ENV) {
            Some(v) => number::<u64>(TIMEOUT_ENV, &v)?,
            None => DEFAULT_TIMEOUT_SECS,
        };
        let env = DistEnv {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            timeout: Duration::from_secs(secs.max(1)),
        };
        env.check()?;
        Ok(Some(env))
    }

    /// Checks that the rank fits the world.
    pub fn check(&self) -> Result<()> {
        if self.world_size == 0 {
            return Err(DistError::Env {
                var: "WORLD_SIZE",
                reason: "must be at least 1".to_string(),
            });
        }
        if self.rank >= self.world_size {
            return Err(DistError::Env {
                var: "RANK",
                reason: format!(
                    "{} is not below WORLD_SIZE = {}",
                    self.rank, self.world_size
                ),
            });
        }
        Ok(())
    }

    /// The variables to set for rank `rank` of a job like this one (what a launcher exports).
    pub fn vars_for(&self, rank: usize) -> Vec<(&'static str, String)> {
        vec![
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
            (TIMEOUT_ENV, self.timeout.as_secs().to_string()),
        ]
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it), for a local launch.
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
