//! What the broker does with DNS answers (security catalogue §5.2: EG-04, EG-05, EG-06,
//! EG-20, EG-21), with the answers scripted by a resolver the runtime is given instead of the
//! system's (catalogue §7.2), so no test depends on real DNS.
//!
//! Loopback stands in for both sides: the "public" upstream is a TLS mock on 127.0.0.2 (the only
//! range the runtime exempts), the "internal" service a [`Victim`] on 127.0.0.1 whose accept
//! count must stay 0. Nothing on loopback may listen on 443, so answers carry the listeners'
//! ports, as a `--resolve` pin with a port does.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_host_api::egress::Decision;
use airlock_host_api::egress::resolve::{Lookup, Resolve, Resolver};
use airlock_runtime::engine::EgressOptions;
use serde_json::json;

use crate::egress::{Egress, UPSTREAM_IP, outcomes, reasons};
use crate::mock::Victim;
use airlock_testkit::{Reply, TestCa, Upstream};

const INTERNAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How the scripted server answers one query.
#[derive(Clone)]
enum Answer {
    Addresses(Vec<SocketAddr>),
    /// SERVFAIL, NXDOMAIN: the lookup fails.
    Fail,
    /// No answer for a minute.
    Hang,
}

type Script = dyn Fn(usize) -> Answer + Send + Sync;

/// A DNS server whose answer to the `n`th query (from 0) is `script(n)`; it keeps every query.
#[derive(Clone)]
struct ScriptedDns {
    script: Arc<Script>,
    queries: Arc<Mutex<Vec<String>>>,
}

impl ScriptedDns {
    fn new(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            script: Arc::new(script),
            queries: Arc::default(),
        }
    }

    /// The same answer to every query.
    fn always(answer: Answer) -> Self {
        Self::new(move |_| answer.clone())
    }

    /// The names asked for so far, in order.
    fn queries(&self) -> Vec<String> {
        self.queries.lock().expect("queries lock").clone()
    }
}

impl Resolve for ScriptedDns {
    fn lookup<'a>(&'a self, host: &'a str, _port: u16) -> Lookup<'a> {
        let n = {
            let mut queries = self.queries.lock().expect("queries lock");
            queries.push(host.to_string());
            queries.len() - 1
        };
        let answer = (self.script)(n);
        Box::pin(async move {
            match answer {
                Answer::Addresses(addrs) => Ok(addrs),
                Answer::Fail => Err(io::Error::other("SERVFAIL")),
                Answer::Hang => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(Vec::new())
                }
            }
        })
    }
}

/// A runtime asking `dns`, exempting only the upstream's address and trusting `ca`.
fn runtime(dns: &ScriptedDns, ca: &TestCa) -> Egress {
    let options = EgressOptions {
        allow_private: UPSTREAM_IP.to_string().parse().expect("range"),
        resolver: Resolver::new(dns.clone()),
        ..EgressOptions::default()
    };
    Egress::with_options(options, Some(ca))
}

fn upstream(ca: &TestCa) -> Upstream {
    Upstream::start(ca, &["api.allowed.test"], UPSTREAM_IP, |request| {
        if request.path_and_query == "/start" {
            Reply::redirect(302, "https://api.allowed.test/again")
        } else {
            Reply::status(200)
        }
    })
    .expect("upstream starts")
}

fn addrs(list: &[&str]) -> Answer {
    Answer::Addresses(list.iter().map(|a| a.parse().expect("address")).collect())
}

/// EG-04, EG-20: the name is allowed, the answer is not. Every answer is refused by address
/// before anything is dialed, whatever embedding hides it.
#[tokio::test]
async fn an_allowed_name_answering_an_internal_address_is_refused_and_never_dialed() {
    let ca = TestCa::new().expect("test CA");
    let victim = Victim::start(INTERNAL);
    let port = victim.addr().port();
    for (answer, reason) in [
        (format!("127.0.0.1:{port}"), "loopback"),
        (format!("[::ffff:127.0.0.1]:{port}"), "loopback"),
        (format!("[::1]:{port}"), "loopback"),
        (format!("0.0.0.0:{port}"), "unspecified"),
        ("10.0.0.5:443".to_string(), "private"),
        ("[::ffff:10.0.0.5]:443".to_string(), "private"),
        ("169.254.169.254:443".to_string(), "metadata"),
        ("[fd00:ec2::254]:443".to_string(), "metadata"),
        ("100.100.100.200:443".to_string(), "metadata"),
        ("[64:ff9b::a00:5]:443".to_string(), "ipv4-embedded"),
        (format!("[64:ff9b::7f00:1]:{port}"), "ipv4-embedded"),
        ("[2002:a9fe:a9fe::]:443".to_string(), "ipv4-embedded"),
    ] {
        let dns = ScriptedDns::always(addrs(&[&answer]));
        let egress = runtime(&dns, &ca);
        let ran = egress.fetch("https://api.allowed.test/").await;
        assert_eq!(outcomes(&ran), ["DestinationIpProhibited"], "{answer}");
        let got = &reasons(&ran)[0];
        assert!(
            got.starts_with("destination-ip-prohibited:") && got.contains(reason),
            "{answer}: {got}"
        );
        assert_eq!(ran.egress[0].decision, Decision::Denied);
        assert_eq!(dns.queries(), ["api.allowed.test"]);
    }
    // A name built to point at the metadata address is one more allowed name (EG-20).
    let dns = ScriptedDns::always(addrs(&["169.254.169.254:443"]));
    let egress = runtime(&dns, &ca);
    let ran = egress.fetch("https://169.254.169.254.nip.io/").await;
    assert_eq!(reasons(&ran), ["no-matching-rule"]);
    assert!(dns.queries().is_empty(), "refused before any lookup");
    assert_eq!(victim.accepts(), 0, "nothing reached the internal service");
}

/// EG-05: the first answer is public, every later one internal (TTL 0). Each request hop asks
/// exactly once and dials the address that answer gave and the classifier passed; the second
/// hop (the guest following a redirect to the same name) gets the internal answer and is
/// refused, so nothing ever connects to it.
#[tokio::test]
async fn dns_rebinding_gets_one_lookup_per_hop_and_only_the_checked_address_is_dialed() {
    let ca = TestCa::new().expect("test CA");
    let mock = upstream(&ca);
    let victim = Victim::start(INTERNAL);
    let (public, internal) = (mock.addr(), victim.addr());
    let dns =
        ScriptedDns::new(move |n| Answer::Addresses(vec![if n == 0 { public } else { internal }]));
    let egress = runtime(&dns, &ca);
    let ran = egress
        .run(
            "exfil",
            "follow-redirect",
            json!({"url": "https://api.allowed.test/start"}),
        )
        .await;
    assert_eq!(
        outcomes(&ran),
        ["ok 302", "DestinationIpProhibited"],
        "{:?}",
        ran.result
    );
    assert_eq!(
        reasons(&ran)[1],
        "destination-ip-prohibited:loopback",
        "{:?}",
        ran.egress
    );
    assert_eq!(
        dns.queries(),
        ["api.allowed.test", "api.allowed.test"],
        "exactly one lookup per hop"
    );
    assert_eq!(
        ran.egress[0].address,
        Some(public.ip()),
        "dialed as checked"
    );
    assert_eq!(mock.accepts(), 1);
    assert_eq!(victim.accepts(), 0);
}

/// EG-06: an answer mixing an internal and an allowed address, in either order, dials only the
/// allowed one; when that one refuses the connection there is no fallback to the other.
#[tokio::test]
async fn a_mixed_answer_dials_only_the_allowed_address_in_either_order() {
    let ca = TestCa::new().expect("test CA");
    let mock = upstream(&ca);
    let victim = Victim::start(INTERNAL);
    let (public, internal) = (mock.addr(), victim.addr());
    for answer in [vec![internal, public], vec![public, internal]] {
        let dns = ScriptedDns::always(Answer::Addresses(answer.clone()));
        let ran = runtime(&dns, &ca).fetch("https://api.allowed.test/").await;
        assert_eq!(outcomes(&ran), ["ok 200"], "{answer:?}: {:?}", ran.result);
        assert_eq!(ran.egress[0].address, Some(public.ip()));
    }
    assert_eq!(mock.requests().len(), 2);
    // The allowed address is down: the happy-eyeballs fallback must not be the internal one.
    let closed = {
        let listener = TcpListener::bind((UPSTREAM_IP, 0)).expect("bind");
        listener.local_addr().expect("address")
    };
    for answer in [vec![closed, internal], vec![internal, closed]] {
        let dns = ScriptedDns::always(Answer::Addresses(answer.clone()));
        let ran = runtime(&dns, &ca).fetch("https://api.allowed.test/").await;
        assert_eq!(outcomes(&ran), ["ConnectionRefused"], "{answer:?}");
    }
    // Nothing allowed in the answer: refused by the first denial.
    let dns = ScriptedDns::always(addrs(&["10.0.0.1:443", &internal.to_string()]));
    let ran = runtime(&dns, &ca).fetch("https://api.allowed.test/").await;
    assert_eq!(reasons(&ran), ["destination-ip-prohibited:private"]);
    assert_eq!(
        victim.accepts(),
        0,
        "never a connection to the internal address"
    );
}

/// EG-21: a lookup that hangs ends at the 5 s DNS timeout (with half a second of slack), a
/// failing one and an empty answer at once; each with a typed DNS error, nothing dialed.
#[tokio::test]
async fn dns_failures_end_in_a_typed_error_within_the_dns_timeout() {
    let ca = TestCa::new().expect("test CA");
    let mock = upstream(&ca);
    for (answer, outcome, reason, within) in [
        (
            Answer::Fail,
            "DnsError",
            "dns-error",
            Duration::from_secs(1),
        ),
        (
            Answer::Addresses(Vec::new()),
            "DnsError",
            "dns-no-addresses",
            Duration::from_secs(1),
        ),
        (
            Answer::Hang,
            "DnsTimeout",
            "dns-timeout",
            Duration::from_millis(5_500),
        ),
    ] {
        let dns = ScriptedDns::always(answer);
        let egress = runtime(&dns, &ca);
        let ran = egress.fetch("https://api.allowed.test/").await;
        // From the guest's call to the error it got.
        let took = Duration::from_micros(ran.egress[0].duration_us);
        assert_eq!(outcomes(&ran), [outcome], "{reason}");
        assert_eq!(reasons(&ran), [reason]);
        assert_eq!(ran.egress[0].decision, Decision::Failed, "{reason}");
        assert_eq!(ran.egress[0].address, None, "{reason}: nothing dialed");
        assert!(took <= within, "{reason}: took {took:?}");
    }
    assert_eq!(mock.accepts(), 0);
}
