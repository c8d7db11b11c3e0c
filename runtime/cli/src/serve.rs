//! `airlock serve`: the operator's HTTP API (docs/api.md) on one data dir.
//!
//! Secure by default: it listens on loopback; plain HTTP on any other address, and the egress
//! dev switches (`--resolve`, `--allow-private`, `--extra-root-ca`), are refused unless the
//! operator says so twice (the switch itself, and `--dev-insecure`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use airlock_audit::{AuditTrail, Node};
use airlock_host_api::egress::ip::AllowRanges;
use clap::Args;

use super::config;
use super::engine_args::EngineArgs;
use super::exit::{Exit, fail};
use super::logging;
use super::state::StateArgs;
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::runtime::Runtime;
use airlock_runtime::units::{ByteSize, HumanDuration};
use airlock_server::{AdmissionLimits, App, ServeLimits};
use airlock_store::Backend;

/// How long an invocation runs at normal CPU priority before its thread is demoted: longer
/// than almost every real call, short enough that a busy loop soon stops competing.
const DEMOTE_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// The shortest heartbeat allowed.
const MIN_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Settings from this TOML file, each key a flag of this command without its dashes
    /// (`max-concurrent = 32`, `trusted-proxy = ["10.0.0.0/8"]`); a flag or environment
    /// variable given wins over the file (docs/deploy.md, "The config file")
    #[arg(long, env = "AIRLOCK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the settings (the config file, flags and environment) and exit: 0 when the
    /// server would start with them
    #[arg(long)]
    check_config: bool,
    /// Address to listen on (port 0 picks a free one; the address is printed on stdout)
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Invocations running at once, across tenants (with --store postgres://, across the
    /// cluster: each live node admits its share)
    #[arg(long, default_value_t = 64)]
    max_concurrent: usize,
    /// Invocations running at once for one tenant (across the cluster, as --max-concurrent)
    #[arg(long, default_value_t = 8)]
    tenant_concurrent: usize,
    /// Invocations of one tenant waiting for a slot; more are refused with 429
    #[arg(long, default_value_t = 64)]
    tenant_queue: usize,
    /// How often this node marks itself alive among the nodes sharing its store; a node
    /// silent for three heartbeats is taken for dead and its share of the caps goes to the
    /// others
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    heartbeat: HumanDuration,
    /// Workers running queued runs (`?async=true`), under the same caps as API invocations;
    /// 0 queues runs for other nodes only
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Runs one tenant may have queued or running (`?async=true`, webhooks, schedules,
    /// retries); more are refused with 429
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    tenant_runs: u64,
    /// The most attempts a queued run makes, whatever its manifest's `max-attempts` asks
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// How long a dead run keeps its (sealed) input for `retry`; then it is destroyed and
    /// only the run's metadata stays
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    dead_run_retention: HumanDuration,
    /// Export traces to this OpenTelemetry collector, OTLP/HTTP with JSON:
    /// http://HOST:PORT[/PATH] (spans go to PATH/v1/traces; docs/operate.md, "Traces")
    #[arg(long, env = "AIRLOCK_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Serve no operator console at /console (docs/api.md, "The console")
    #[arg(long)]
    no_console: bool,
    /// Largest request body (bundle uploads aside)
    #[arg(long, default_value = "1MiB")]
    max_body: ByteSize,
    /// Client connections open at once; the next waits until one closes
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// The TLS-terminating proxy in front, by address or CIDR (repeatable): from these peers
    /// only, X-Forwarded-For or Forwarded names the client (the rightmost address outside these
    /// ranges), which failure limits count against and the audit trail records
    #[arg(long, value_name = "CIDR")]
    trusted_proxy: Vec<AllowRanges>,
    /// DEV ONLY: serve plain HTTP on a non-loopback address (API keys would cross the network
    /// in clear; put a TLS-terminating proxy in front instead)
    #[arg(long)]
    insecure_plain_http: bool,
    /// The URL browsers and webhook senders reach this server at (behind its TLS proxy), e.g.
    /// https://airlock.example.com; OAuth providers send people back to its
    /// /v1/oauth/callback. Default: http:// and the listening address (loopback only)
    #[arg(long)]
    public_url: Option<String>,
    /// Confirms DEV ONLY switches: without it the server refuses to start with any of them
    #[arg(long)]
    dev_insecure: bool,
    /// This server's name in the audit records it writes, telling apart the servers that
    /// share one store: 1 to 63 of a-z, 0-9, '.', '_' and '-' [default: the host name,
    /// lower-cased, any other character made '-']
    #[arg(long, env = "AIRLOCK_NODE", value_name = "NAME")]
    node: Option<Node>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    state: StateArgs,
}

impl ServeArgs {
    /// The trace exporter `--otlp-endpoint` asks for, started.
    pub(crate) fn traces(
        &self,
    ) -> Result<Option<airlock_server::telemetry::OtlpLayer>, airlock_server::telemetry::OtlpError>
    {
        let node = self.node.clone().unwrap_or_else(Node::host);
        self.otlp_endpoint
            .as_deref()
            .map(|endpoint| airlock_server::telemetry::OtlpLayer::start(endpoint, node.as_str()))
            .transpose()
    }
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<Exit> {
    let settings = args.engine.settings();
    let state = args.state.state()?;
    let loosened = loosened(&args, &settings);
    if !loosened.is_empty() && !args.dev_insecure {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "airlock serve refuses {}: it loosens a secure default for every tenant. For \
                 development and tests only, confirm with --dev-insecure",
                loosened.join(", ")
            ),
        ));
    }
    if let Some(url) = &args.public_url {
        check_public_url(url)?;
    }
    if args.heartbeat.0 < MIN_HEARTBEAT {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "--heartbeat {}: too short; at least {}ms, so the store is not kept busy \
                 marking nodes alive",
                args.heartbeat,
                MIN_HEARTBEAT.as_millis()
            ),
        ));
    }
    if !args.listen.ip().is_loopback() && !args.insecure_plain_http {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "--listen {}: not a loopback address, and the server speaks plain HTTP: API keys \
                 would cross the network in clear. Listen on loopback behind a TLS-terminating \
                 proxy",
                args.listen
            ),
        ));
    }
    for switch in &loosened {
        logging::warn(&format!("DEV ONLY {switch} is on (--dev-insecure)"));
    }
    let max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    descriptors_for(max_connections)?;
    let sections = match &args.config {
        Some(file) => config::ConfigFile::read(file)
            .and_then(|file| file.sections())
            .map_err(|e| fail(Exit::Usage, e))?,
        None => config::Sections::default(),
    };
    let alerts = sections
        .alert_settings(args.config.as_deref())
        .map_err(|e| fail(Exit::Usage, e))?;
    if args.check_config {
        let from = args.config.as_ref().map_or(String::new(), |file| {
            format!(" ({} and the flags)", file.display())
        });
        println!("airlock serve: the settings are valid{from}");
        return Ok(Exit::Success);
    }
    let trusted_proxies: AllowRanges = args.trusted_proxy.iter().cloned().collect();
    let node = args.node.clone().unwrap_or_else(Node::host);
    let (store, trail) = state.open_as(node.clone())?;
    refuse_damaged(&store, &trail)?;
    // Bound before the runtime exists, so its egress knows the address to refuse (EG-19).
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let bound = listener.local_addr()?;
    let mut egress = settings.egress;
    egress.self_addresses = own_addresses(bound);
    let settings = EngineSettings {
        demote_after: Some(DEMOTE_AFTER),
        egress,
        ..settings
    };
    let runtime = Runtime::new(&state.data, settings)?;
    let limits = ServeLimits {
        admission: AdmissionLimits {
            global: args.max_concurrent,
            tenant: args.tenant_concurrent,
            queue: args.tenant_queue,
            ..AdmissionLimits::default()
        },
        max_body: usize::try_from(args.max_body.bytes()).unwrap_or(usize::MAX),
        max_connections,
        heartbeat: args.heartbeat.0,
        workers: args.workers,
        tenant_runs: args.tenant_runs,
        max_attempts: args.max_attempts,
        dead_input_retention: args.dead_run_retention.0,
        console: !args.no_console,
        ..ServeLimits::default()
    };
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    if !trusted_proxies.is_empty() {
        logging::info(&format!(
            "airlock serve: client addresses taken from X-Forwarded-For or Forwarded sent by \
             {trusted_proxies}"
        ));
    }
    let app = Arc::new(
        App::new(runtime, store, trail, limits, &public_url)?.with_trusted_proxies(trusted_proxies),
    );
    let rules: Vec<&str> = alerts.rules.iter().map(|r| r.name.as_str()).collect();
    logging::info(&format!(
        "alert rules: {}; notifications to {} endpoint(s)",
        if rules.is_empty() {
            "none".to_string()
        } else {
            rules.join(", ")
        },
        alerts.notify.len()
    ));
    airlock_server::alerting::start(&app, alerts).map_err(|e| anyhow::anyhow!("alerts: {e}"))?;
    // The CLI's listing verbs reach the server here while it holds the store.
    let local = match airlock_server::local::bind(&state.data) {
        Ok(local) => Some(local),
        Err(e) => {
            logging::warn(&format!(
                "no operator socket ({e}): CLI verbs cannot read this data dir while the server \
                 runs"
            ));
            None
        }
    };
    let shutdown = shutdown()?;
    println!("listening on http://{bound}");
    logging::info(&format!(
        "airlock serve: data {}, node {node}; stop with Ctrl-C or SIGTERM",
        state.data.display()
    ));
    let served = airlock_server::serve(listener, local, app, shutdown).await;
    airlock_server::local::unbind(&state.data);
    served?;
    logging::info("stopped: in-flight requests finished, audit checkpoint signed");
    Ok(Exit::Success)
}

/// The addresses a guest could reach this server at: the bound address, and for a wildcard
/// listener every address of every interface on its port (loopback and unspecified addresses
/// are covered by the classifier's host-local rule).
fn own_addresses(bound: SocketAddr) -> Vec<SocketAddr> {
    let mut own = vec![bound];
    if bound.ip().is_unspecified() {
        own.extend(
            interface_addresses()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, bound.port())),
        );
    }
    own
}

/// Every IPv4 and IPv6 address configured on this host's interfaces (`getifaddrs`); none if
/// the list cannot be read.
fn interface_addresses() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut addrs = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed; `ifa_addr`
        // is null or points to a sockaddr of the family it names, of that family's size.
        unsafe {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        // `s_addr` holds the address in network byte order, as laid out in memory.
                        addrs.push(IpAddr::from(v4.sin_addr.s_addr.to_ne_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        addrs.push(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addrs
}

/// Makes sure the process may open twice `connections` file descriptors (the other half for
/// egress, storage and the engine), raising its soft limit up to the hard one if it must.
fn descriptors_for(connections: usize) -> anyhow::Result<()> {
    let needed = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(2);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max >= needed {
        let raised = libc::rlimit {
            rlim_cur: needed,
            ..limit
        };
        // SAFETY: setrlimit reads the struct we own; a soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(fail(
        Exit::Usage,
        anyhow::anyhow!(
            "--max-connections {connections}: needs {needed} file descriptors (half of them for \
             egress, storage and the engine), but this process may open {} (ulimit -n); lower \
             --max-connections or raise the limit",
            limit.rlim_max
        ),
    ))
}

/// A public URL is https (OAuth codes and webhook bodies cross the network to it), or plain
/// http on a loopback host, with no path, query or credentials.
fn check_public_url(text: &str) -> anyhow::Result<()> {
    let invalid = |why: &str| fail(Exit::Usage, anyhow::anyhow!("--public-url {text}: {why}"));
    let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(invalid("use https (plain http only on a loopback host)")),
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(invalid("give scheme, host and port only"));
    }
    Ok(())
}

/// The DEV ONLY switches in effect.
fn loosened(args: &ServeArgs, settings: &EngineSettings) -> Vec<&'static str> {
    let egress = &settings.egress;
    let mut on = Vec::new();
    if !egress.resolve.is_empty() {
        on.push("--resolve");
    }
    if !egress.allow_private.is_empty() {
        on.push("--allow-private");
    }
    if !egress.extra_roots.is_empty() {
        on.push("--extra-root-ca");
    }
    if args.insecure_plain_http {
        on.push("--insecure-plain-http");
    }
    on
}

/// SIGTERM or SIGINT, registered now: before the server accepts its first connection, so a
/// signal that comes early still drains the server rather than killing it.
fn shutdown() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Refuses to serve a damaged store (docs/deploy.md, "A damaged store"): every record of the
/// embedded database reads back (sled checks each page's checksum), and the audit trail since
/// its newest checkpoint is whole and as long as that checkpoint says.
fn refuse_damaged(store: &Backend, trail: &AuditTrail) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let restore = "restore the data dir from a backup (docs/deploy.md, \"A damaged store\")";
    let mut records = None;
    if let Some(sled) = store.sled() {
        records = Some(sled.read_all().map_err(|e| {
            fail(
                Exit::Host,
                anyhow::anyhow!("the database does not read back whole: {e}; {restore}"),
            )
        })?);
    }
    if let Some(broken) = trail.check_since_checkpoint()? {
        return Err(fail(
            Exit::Audit,
            anyhow::anyhow!(
                "the audit trail in the store is damaged at {broken}; `airlock audit verify` \
                 names every break; {restore}"
            ),
        ));
    }
    let records = records.map_or(String::new(), |n| format!("{n} records read back, "));
    logging::info(&format!(
        "store checked: {records}the audit trail whole since its last checkpoint ({} ms)",
        started.elapsed().as_millis()
    ));
    Ok(())
}
