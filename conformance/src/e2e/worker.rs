//! The Worker of the test world: `wrangler dev` as a child process in a process group of its
//! own (wrangler starts workerd and esbuild below it), so that stopping it stops all of them.
//! Durable Object storage lives in a persist directory that outlives restarts.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use super::client::WorkerApi;

/// Longest wait for `wrangler dev` to answer `/pilot/v1/info` after a start.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between readiness polls.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Time wrangler gets to stop after SIGTERM before the group is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The built Worker's entry module, relative to its directory (worker-build's output).
const MAIN_MODULE: &str = "build/worker/shim.mjs";
/// Log lines quoted when the Worker fails to start.
const LOG_TAIL_LINES: usize = 80;

/// How to run the Worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The Worker's directory (holds its wrangler configuration and `node_modules`).
    pub dir: PathBuf,
    /// The Worker's wrangler configuration file. The world runs a copy without its `[build]`
    /// table (see [`prebuilt_config`]).
    pub wrangler_config: PathBuf,
    /// The wrangler executable.
    pub wrangler: PathBuf,
    /// Durable Object storage; reused across restarts.
    pub persist_dir: PathBuf,
    /// wrangler's output (stdout and stderr), appended across restarts.
    pub log_file: PathBuf,
    /// `PILOT_API_TOKEN`: the bearer token of the `/pilot/v1` passthrough.
    pub api_token: String,
    /// Further variables (`--var NAME:VALUE`), e.g. the relay URL.
    pub vars: Vec<(String, String)>,
    /// Longest wait for readiness.
    pub ready_timeout: Duration,
}

impl WorkerConfig {
    /// The Worker in `dir` with its `wrangler.toml` and local wrangler, storage and log
    /// under `state_dir`.
    pub fn new(dir: &Path, state_dir: &Path, api_token: String) -> Self {
        Self {
            dir: dir.to_path_buf(),
            wrangler_config: dir.join("wrangler.toml"),
            wrangler: dir.join("node_modules/.bin/wrangler"),
            persist_dir: state_dir.join("do-storage"),
            log_file: state_dir.join("wrangler.log"),
            api_token,
            vars: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

/// A running `wrangler dev`. Dropping it kills the whole process group.
#[derive(Debug)]
pub struct WorkerProcess {
    config: WorkerConfig,
    addr: SocketAddr,
    inspector_port: u16,
    child: Option<Running>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    /// The child's PID, which is its process group's ID (`process_group(0)`); kept because
    /// the PID is no longer readable once the child has been reaped.
    pgid: Option<i32>,
}

impl WorkerProcess {
    /// Starts `wrangler dev` on a free loopback port and waits until the API answers.
    pub async fn start(config: WorkerConfig) -> anyhow::Result<Self> {
        for (what, path) in [
            ("wrangler", &config.wrangler),
            ("wrangler config", &config.wrangler_config),
        ] {
            if !path.exists() {
                bail!(
                    "{what} not found at {} (run `make worker`, which also runs npm ci)",
                    path.display()
                );
            }
        }
        let source = std::fs::read_to_string(&config.wrangler_config)
            .with_context(|| format!("reading {}", config.wrangler_config.display()))?;
        let main = config.dir.join(MAIN_MODULE);
        if !main.exists() {
            bail!("{} not found (run `make worker`)", main.display());
        }
        let derived = config.log_file.with_file_name("wrangler.e2e.toml");
        std::fs::write(&derived, prebuilt_config(&source, &main))
            .with_context(|| format!("writing {}", derived.display()))?;
        let mut config = config;
        config.wrangler_config = derived;
        let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port()?);
        let mut worker = Self {
            config,
            addr,
            inspector_port: free_port()?,
            child: None,
        };
        worker.spawn().await?;
        Ok(worker)
    }

    /// The Worker's HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client of its API.
    pub fn api(&self) -> WorkerApi {
        WorkerApi::new(self.addr, self.config.api_token.clone())
    }

    /// Where wrangler's output goes.
    pub fn log_file(&self) -> &Path {
        &self.config.log_file
    }

    /// Stops wrangler (SIGTERM, then SIGKILL after a grace period) and starts it again on the
    /// same port with the same storage: the Durable Object restarts from what it persisted.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn().await
    }

    /// Stops wrangler and everything it started.
    pub async fn stop(&mut self) {
        let Some(Running { mut child, pgid }) = self.child.take() else {
            return;
        };
        signal_group(pgid, Signal::SIGTERM);
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(status) => debug!(?status, "wrangler exited"),
            Err(_) => {
                warn!("wrangler ignored SIGTERM; killing its process group");
                signal_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
        }
        // workerd may outlive wrangler for a moment; it is in the same group.
        signal_group(pgid, Signal::SIGKILL);
        info!(addr = %self.addr, "worker stopped");
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.config.log_file)
            .with_context(|| format!("opening {}", self.config.log_file.display()))?;
        let mut command = Command::new(&self.config.wrangler);
        command
            .current_dir(&self.config.dir)
            .args(["dev", "--config"])
            .arg(&self.config.wrangler_config)
            .args(["--ip", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .arg("--inspector-port")
            .arg(self.inspector_port.to_string())
            .args(["--inspector-ip", "127.0.0.1"])
            .arg("--persist-to")
            .arg(&self.config.persist_dir)
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                "info",
            ])
            .args([
                "--var",
                &format!("PILOT_API_TOKEN:{}", self.config.api_token),
            ]);
        for (name, value) in &self.config.vars {
            command.args(["--var", &format!("{name}:{value}")]);
        }
        // If the wrangler config runs worker-build, it must not try to download its tools.
        for (var, tool) in [
            ("WASM_OPT_BIN", "node_modules/.bin/wasm-opt"),
            ("ESBUILD_BIN", "node_modules/.bin/esbuild"),
        ] {
            let path = self.config.dir.join(tool);
            if path.exists() && std::env::var_os(var).is_none() {
                command.env(var, path);
            }
        }
        if let Some(bin) = find_in_path("wasm-bindgen") {
            if std::env::var_os("WASM_BINDGEN_BIN").is_none() {
                command.env("WASM_BINDGEN_BIN", bin);
            }
        }
        // No telemetry, no Cloudflare API calls, no update check: loopback only.
        command
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_UPDATE_NOTIFIER", "1")
            .env("CI", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.config.wrangler.display()))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        info!(addr = %self.addr, pid = ?pgid, "wrangler dev starting");
        self.child = Some(Running { child, pgid });
        self.wait_ready().await
    }

    /// Polls `/pilot/v1/info` until it answers 200, the child exits, or the timeout passes.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let api = self.api();
        let deadline = tokio::time::Instant::now() + self.config.ready_timeout;
        loop {
            let last = match api.info().await {
                Ok(_) => {
                    info!(addr = %self.addr, "worker ready");
                    return Ok(());
                }
                Err(err) => err.to_string(),
            };
            if let Some(running) = self.child.as_mut() {
                if let Some(status) = running.child.try_wait()? {
                    bail!(
                        "wrangler dev exited ({status}) before the Worker answered; last {} \
                         lines of {}:\n{}",
                        LOG_TAIL_LINES,
                        self.config.log_file.display(),
                        log_tail(&self.config.log_file)
                    );
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the Worker did not answer /pilot/v1/info within {:?} (last: {last}); \
                     last lines of {}:\n{}",
                    self.config.ready_timeout,
                    self.config.log_file.display(),
                    log_tail(&self.config.log_file)
                );
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // A failing scenario panics: show what the Worker logged before its temp dir goes.
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {}:\n{}",
                self.config.log_file.display(),
                log_tail(&self.config.log_file)
            );
        }
        if let Some(running) = self.child.take() {
            signal_group(running.pgid, Signal::SIGKILL);
        }
    }
}

/// The Worker's wrangler config with `main` pointing at the prebuilt `main` and without its
/// `[build]` table: `make worker` built it already, and rebuilding on every (re)start would
/// cost minutes of wasm-opt. Everything else (Durable Object bindings, migrations, vars) is
/// kept as written.
pub fn prebuilt_config(source: &str, main: &Path) -> String {
    let mut out = String::new();
    let mut in_build = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_build = trimmed.starts_with("[build]") || trimmed.starts_with("[build.");
        }
        if in_build {
            continue;
        }
        if trimmed.starts_with("main ") || trimmed.starts_with("main=") {
            // TOML basic strings: a path with a quote or backslash needs escaping.
            let escaped = main
                .display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            out.push_str(&format!("main = \"{escaped}\"\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A port the OS considers free right now (a tiny race with other binders is accepted).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn signal_group(pgid: Option<i32>, signal: Signal) {
    // A PID of 0 or below would address our own group or every process: never send those.
    if let Some(pgid) = pgid.filter(|&id| id > 1) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// The first `name` on `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The last lines of the log at `path` (empty if unreadable).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines.get(start..).unwrap_or_default().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_config_drops_the_build_table_and_points_main_at_the_build() {
        let source = "name = \"w\"\nmain = \"build/worker/shim.mjs\"\n\n[build]\n\
                      command = \"make -C .. worker\"\n\n[[durable_objects.bindings]]\n\
                      name = \"PILOT\"\n[vars]\nA = \"1\"\n";
        let out = prebuilt_config(source, Path::new("/x/build/worker/shim.mjs"));
        assert!(!out.contains("command"), "{out}");
        assert!(
            out.contains("main = \"/x/build/worker/shim.mjs\"\n"),
            "{out}"
        );
        assert!(
            out.contains("[[durable_objects.bindings]]\nname = \"PILOT\""),
            "{out}"
        );
        assert!(out.contains("[vars]\nA = \"1\""), "{out}");
    }
}
