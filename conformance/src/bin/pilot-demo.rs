//! `pilot-demo`: a Cloudflare Worker joins a Pilot overlay on loopback and talks to a native
//! peer; prints what is sent, what comes back, addresses and timings, then stops everything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use conformance::e2e::scenario::{self, Ends, STEP_TIMEOUT};
use conformance::e2e::{World, WorldConfig, RELAY_IP};
use tracing_subscriber::EnvFilter;

/// Runs the Worker end to end on loopback and narrates it: a local registry (127.0.0.1), the
/// relay (127.0.0.2), a native peer, and the Worker under `wrangler dev`. Everything is
/// stopped at the end. `make demo` builds the Worker and runs this.
///
/// Logs follow RUST_LOG (default "warn"), on stderr.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The Worker's directory (wrangler.toml, node_modules, build/).
    #[arg(long, env = "PILOT_WORKER_DIR")]
    worker_dir: Option<PathBuf>,
    /// Measure instead of narrate: Worker -> peer stream throughput and echo round trips.
    #[arg(long)]
    bench: bool,
    /// Bytes of the --bench transfer.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    bench_bytes: usize,
    /// Echo round trips of --bench.
    #[arg(long, default_value_t = 1000)]
    bench_round_trips: usize,
    /// Bytes per echo round trip of --bench.
    #[arg(long, default_value_t = 64)]
    bench_echo_bytes: usize,
}

/// Prints one transcript line with the time since the start.
struct Transcript {
    start: Instant,
}

impl Transcript {
    fn say(&self, text: impl AsRef<str>) {
        let t = self.start.elapsed().as_secs_f64();
        println!("[{t:7.3}s] {}", text.as_ref());
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pilot-demo: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pilot-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Transcript {
        start: Instant::now(),
    };
    let mut config = WorldConfig::from_env();
    if let Some(dir) = cli.worker_dir.clone() {
        config.worker_dir = dir;
    }
    out.say(format!(
        "starting registry, relay, native peer and `wrangler dev` ({})",
        config.worker_dir.display()
    ));
    let mut world = World::start(config).await?;
    out.say(format!(
        "registry {}  relay {} (UDP on {})  peer {} at {}  Worker http://{}",
        world.registry.local_addr(),
        world.relay.http_addr(),
        world.relay.udp_ip(),
        world.peer.addr(),
        world.peer.udp_addr(),
        world.worker.addr()
    ));
    let result = if cli.bench {
        bench(&world, &out, &cli).await
    } else {
        narrate(&mut world, &out).await
    };
    out.say("stopping everything");
    let stopped = world.shutdown().await;
    result?;
    stopped?;
    out.say("done");
    Ok(())
}

async fn narrate(world: &mut World, out: &Transcript) -> anyhow::Result<()> {
    let (ends, info) = Ends::of(world).await?;
    let endpoint = info.endpoint.clone().unwrap_or_default();
    out.say(format!(
        "Worker registered: node {} address {} UDP endpoint {endpoint} (a relay session)",
        info.node_id, info.address
    ));

    out.say("peer -> Worker trust request sent (relayed: the Worker polls its inbox every 10 s)");
    scenario::peer_asks_worker_for_trust(world, &ends).await?;
    out.say(format!(
        "approved through the Worker API: Worker and {} trust each other",
        ends.peer
    ));
    let second = world.start_extra_peer("second").await?;
    scenario::worker_asks_peer_for_trust(&second, &ends).await?;
    out.say(format!(
        "Worker -> second peer {} trust request approved by that peer",
        second.addr()
    ));
    second.shutdown().await?;
    let real_addr = world.registered_real_addr(ends.worker).await?;
    out.say(format!(
        "registry's real_addr for the Worker: {real_addr} (relay IP {RELAY_IP})"
    ));
    if real_addr.ip() != RELAY_IP {
        bail!("the registry recorded {real_addr}, not a relay address");
    }

    let started = Instant::now();
    let back = scenario::echo(&ends, b"hello through the relay").await?;
    out.say(format!(
        "echo (port 7): sent \"hello through the relay\", got {:?} in {:.1} ms",
        String::from_utf8_lossy(&back),
        ms(started.elapsed())
    ));

    let (reply, received) = scenario::message(world, &ends, "hello pilot").await?;
    out.say(format!(
        "send-message (port 1001): \"hello pilot\" -> reply {reply:?}; peer got {:?} from {}",
        String::from_utf8_lossy(&received.payload),
        received.from
    ));

    let (event, publishes) = scenario::publish_and_receive(&ends, "demo.news", b"extra!").await?;
    out.say(format!(
        "event stream (port 1002): subscribed to demo.news, published \"extra!\" ({publishes}x); \
         got topic {} data {:?}",
        event.topic,
        String::from_utf8_lossy(&event.data)
    ));

    let at_peer = scenario::datagram_to_peer(world, &ends, 4000, b"dgram to peer").await?;
    out.say(format!(
        "datagram Worker -> peer:4000: peer got {:?} from {}:{}",
        String::from_utf8_lossy(&at_peer.payload),
        at_peer.from,
        at_peer.src_port
    ));
    let at_worker = scenario::datagram_to_worker(world, &ends, 4001, b"dgram to worker").await?;
    out.say(format!(
        "datagram peer -> Worker:4001: Worker got {:?} from {}:{}",
        String::from_utf8_lossy(&at_worker.data),
        at_worker.from,
        at_worker.src_port
    ));

    let (_, got, back) =
        scenario::peer_dials_worker(world, &ends, 5000, b"peer-initiated", b"served").await?;
    out.say(format!(
        "peer dialed Worker:5000: Worker read {:?}, answered {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&back)
    ));

    relay_crash(world, &ends, out).await?;
    object_restart(world, out, &info).await
}

async fn relay_crash(world: &mut World, ends: &Ends, out: &Transcript) -> anyhow::Result<()> {
    const BYTES: usize = 1024 * 1024;
    let transfer = scenario::start_transfer(world, ends, 6000, BYTES).await?;
    out.say("1 MiB Worker -> peer transfer started on port 6000");
    transfer.progress.reached(BYTES / 4, STEP_TIMEOUT).await?;
    world.relay.kill();
    out.say(format!(
        "relay killed after {} bytes arrived",
        transfer.progress.get()
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.relay.restart().await?;
    out.say(format!("relay restarted on {}", world.relay.http_addr()));
    let done = transfer.finish().await?;
    let same = done.sent_sha256 == done.received_sha256 && done.received == done.sent;
    out.say(format!(
        "transfer done: {} of {} bytes in {:.2} s, SHA-256 {} at both ends: {}",
        done.received,
        done.sent,
        done.elapsed.as_secs_f64(),
        hex::encode(done.received_sha256),
        if same { "equal" } else { "DIFFERENT" }
    ));
    if !same {
        bail!("the transfer lost or changed bytes");
    }
    let info = world.wait_registered(STEP_TIMEOUT).await?;
    out.say(format!(
        "Worker re-registered with UDP endpoint {}",
        info.endpoint.unwrap_or_default()
    ));
    Ok(())
}

async fn object_restart(
    world: &mut World,
    out: &Transcript,
    before: &conformance::e2e::client::Info,
) -> anyhow::Result<()> {
    world.worker.restart().await?;
    let (ends, info) = Ends::of(world).await?;
    out.say(format!(
        "Durable Object restarted: node {} (before {}), same key: {}, UDP endpoint {}",
        info.node_id,
        before.node_id,
        info.public_key == before.public_key,
        info.endpoint.clone().unwrap_or_default()
    ));
    if info.node_id != before.node_id || info.public_key != before.public_key {
        bail!("the Worker's identity did not survive the restart");
    }
    let back = scenario::echo(&ends, b"after the restart").await?;
    out.say(format!(
        "echo after the restart: {:?}",
        String::from_utf8_lossy(&back)
    ));
    let (_, got, _) =
        scenario::peer_dials_worker(world, &ends, 5001, b"still trusted?", b"yes").await?;
    out.say(format!(
        "peer dialed the private Worker again: admitted, Worker read {:?} (trust restored from \
         storage)",
        String::from_utf8_lossy(&got)
    ));
    Ok(())
}

async fn bench(world: &World, out: &Transcript, cli: &Cli) -> anyhow::Result<()> {
    let (ends, info) = Ends::of(world).await?;
    out.say(format!("Worker {} registered", info.address));
    scenario::peer_asks_worker_for_trust(world, &ends).await?;

    let transfer = scenario::start_transfer(world, &ends, 6000, cli.bench_bytes).await?;
    let done = transfer.finish().await?;
    if done.received != done.sent || done.received_sha256 != done.sent_sha256 {
        bail!("bench transfer lost or changed bytes");
    }
    let secs = done.elapsed.as_secs_f64();
    println!(
        "throughput Worker -> peer via relay: {} bytes in {secs:.2} s = {:.2} MiB/s",
        done.sent,
        done.sent as f64 / secs.max(f64::EPSILON) / (1024.0 * 1024.0)
    );

    let mut times =
        scenario::echo_round_trips(&ends, cli.bench_round_trips, cli.bench_echo_bytes).await?;
    times.sort();
    println!(
        "echo RTT via the Worker API ({} x {} bytes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        cli.bench_echo_bytes,
        ms(percentile(&times, 50)),
        ms(percentile(&times, 99)),
        ms(times.last().copied().unwrap_or_default())
    );
    let endpoint: SocketAddr = info
        .endpoint
        .unwrap_or_default()
        .parse()
        .context("Worker endpoint")?;
    out.say(format!("measured through relay session {endpoint}"));
    Ok(())
}

/// The `p`-th percentile of sorted `times` (nearest rank).
fn percentile(times: &[Duration], p: usize) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let rank = (times.len() * p).div_ceil(100).max(1);
    times.get(rank - 1).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
