//! Types of the Engine's long-lived streams the API relays: container logs, stats and exec
//! sessions.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWrite;

use super::LogStream;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A TTY's single combined stream (reported as stdout).
    Console,
}

/// A piece of container or exec output, as the Engine framed it (not necessarily one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Where it came from.
    pub stream: OutputStream,
    /// The bytes.
    pub data: Bytes,
}

/// What [`Driver::logs`](super::Driver::logs) should return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and deliver new output as it is written.
    pub follow: bool,
    /// Only the last `tail` lines of the existing log (all when `None`).
    pub tail: Option<u64>,
    /// Only output written at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// Prefix every line with its RFC 3339 timestamp (`2024-01-01T00:00:00.000000000Z `).
    pub timestamps: bool,
    /// Include standard output.
    pub stdout: bool,
    /// Include standard error.
    pub stderr: bool,
}

/// One sample of a container's resource use, as the Engine reports it (the previous CPU
/// reading included, so that a rate can be computed from one sample).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// When the Engine read it.
    pub read: Option<DateTime<Utc>>,
    /// Total CPU time used by the container, in nanoseconds.
    pub cpu_total: u64,
    /// The same at the previous reading.
    pub precpu_total: u64,
    /// Host CPU time, in nanoseconds.
    pub system_cpu: u64,
    /// The same at the previous reading.
    pub presystem_cpu: u64,
    /// CPUs available to the container.
    pub online_cpus: u32,
    /// Memory in use, bytes (page cache included).
    pub memory_usage: u64,
    /// Reclaimable page cache counted in `memory_usage` (`inactive_file`, or `cache` on
    /// cgroup v1 without it), bytes.
    pub memory_cache: u64,
    /// Memory limit, bytes.
    pub memory_limit: u64,
    /// Bytes received over all networks.
    pub net_rx: u64,
    /// Bytes sent over all networks.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to block devices.
    pub block_write: u64,
    /// Processes and threads.
    pub pids: u64,
}

/// A command to run in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// Extra environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User (`name`, `uid`, `uid:gid`).
    pub user: Option<String>,
    /// Initial terminal size (columns, rows) with `tty`.
    pub console_size: Option<(u16, u16)>,
}

/// A started exec: its id (for resize and exit code), its output, and its standard input.
pub struct ExecSession {
    /// The Engine's exec id.
    pub id: String,
    /// Output until the process ends.
    pub output: LogStream,
    /// The process's standard input; dropping it closes stdin.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession").field("id", &self.id).finish_non_exhaustive()
    }
}
