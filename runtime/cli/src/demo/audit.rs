//! The demo's audit step: what this run recorded, checked the way `airlock audit verify` does.

use airlock_host_api::audit::AuditEvent;

use super::Demo;
use airlock_audit::{AuditTrail, record};

/// Signs a checkpoint, verifies the whole chain, and summarizes the records from `first` on.
pub(super) fn show(demo: &mut Demo, trail: &AuditTrail, first: u64) -> anyhow::Result<()> {
    trail.checkpoint()?;
    let lines: Vec<(u64, Vec<u8>)> = trail.lines().collect::<Result<_, _>>()?;
    let (mut invocations, mut intents, mut security) = (0, 0, 0);
    for (_, line) in lines.iter().filter(|(seq, _)| *seq >= first) {
        let envelope = record::open(line)?.envelope;
        security += u32::from(envelope.security);
        match envelope.event {
            AuditEvent::Invocation(_) => invocations += 1,
            AuditEvent::EgressIntent(_) => intents += 1,
            _ => {}
        }
    }
    println!(
        "  this run added {} records: {invocations} invocations, {intents} egress intents \
         (written before each request left), {security} flagged as security events",
        lines.len() as u64 - first
    );
    let (report, key) = trail.verify_whole(None)?;
    if report.is_ok() {
        println!(
            "  ✓ the chain of {} records verifies against {} checkpoint(s) signed by key {} \
             (kept in {})",
            report.verified,
            report.checkpoints,
            key,
            trail.dir().path().display()
        );
        println!("  see them with `airlock audit list`; check them with `airlock audit verify`");
    } else {
        demo.failed("the audit trail does not verify");
    }
    Ok(())
}
