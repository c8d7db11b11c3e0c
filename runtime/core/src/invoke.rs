//! One invocation end to end: validate input, fresh sandbox under limits, call, classify,
//! validate output.
//!
//! Every call gets a new `Store`: after a trap an instance is poisoned, and nothing one call
//! leaves in memory may be seen by the next.

use crate::exit::Exit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use airlock_host_api::HostState;
use airlock_host_api::audit::{
    AuditEvent, EgressJournal, InvocationRecord, NoJournal, Subject, Trigger, ValidationFailure,
};
use airlock_host_api::budget::{
    FIELD_SIZE_LIMIT, HostLimitExceeded, MAX_HOST_CALLS, MAX_HOSTCALL_BYTES, MAX_RESOURCES,
};
use airlock_host_api::credentials::CredentialBroker;
use airlock_host_api::egress::{BrokeredHttp, EgressEvent, IntegrationEgress, Suppressed};
use airlock_host_api::kv::{KvBackend, KvCtx, KvUse};
use airlock_host_api::limiter::LimitTripped;
use airlock_host_api::log::GuestLog;
use airlock_host_api::policy::egress::EgressPolicy;
use airlock_host_api::scratch::Scratch;
use serde::Serialize;
use wasmtime::component::ResourceTableError;
use wasmtime::{CallHook, Store, Trap};

use crate::engine::schedule;
use crate::ids::InvocationId;
use crate::journal::InvocationJournal;
use crate::json::{Document, JsonError};
use crate::loader::{ActionSchemas, Integration, ValidatedConfig};
use crate::output::Output;
use crate::runtime::Runtime;
use crate::schema::Violations;
use airlock_host_api::policy::units::{ByteSize, HumanDuration};

/// What a probe sends: not JSON, so an action that parses its input returns at once.
const PROBE_INPUT: &str = "airlock probe: not an input";
/// The longest a probe runs: an action still running by then did not answer `unknown-action`,
/// which is all a probe asks, so `airlock check` never waits out a manifest's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What [`Runtime::execute`] runs: a declared action on input its schema accepted, or a probe
/// ([`Runtime::probe`]).
#[derive(Debug, Clone, Copy)]
enum Call {
    Action,
    Probe,
}

/// How long past its timeout an invocation may take to end, whatever the guest is doing:
/// wasm code is interrupted at the first epoch slice past the deadline (20 ms), a host call is
/// abandoned at the deadline itself, and tearing down the sandbox and its requests takes the
/// rest. Documented in docs/security-model.md; the e2e deadline tests hold every attack to it.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// What one invocation produced: its result, plus metadata that is safe to record.
#[derive(Debug)]
pub struct Invocation {
    pub id: InvocationId,
    pub action: String,
    pub duration: Duration,
    /// Highest total linear memory the sandbox reached, in bytes.
    pub memory_peak: u64,
    /// Most the host held for the guest at once outside its linear memory, in bytes.
    pub host_memory_peak: u64,
    /// Most host resource handles (`wasi:http` fields, bodies, streams, pollables…) the guest
    /// held at once.
    pub host_resources_peak: usize,
    /// Fuel consumed, when the runtime meters fuel.
    pub fuel_used: Option<u64>,
    /// What the guest logged or printed: for the caller only, never for the audit trail.
    pub log: GuestLog,
    /// The requests the guest attempted, metadata only: the first
    /// [`MAX_DETAILED_EVENTS`](airlock_host_api::egress::MAX_DETAILED_EVENTS) in detail…
    pub egress: Vec<EgressEvent>,
    /// …and the rest counted by decision and reason.
    pub egress_suppressed: Vec<Suppressed>,
    /// Echoes of injected credentials scrubbed from responses before the guest saw them.
    pub redactions: u64,
    /// What the guest did with its kv namespace: counts only.
    pub kv: KvUse,
    /// The sequence number of this invocation's audit record, when the runtime keeps a trail.
    pub record: Option<u64>,
    pub result: Result<Output, InvokeError>,
}

/// Who an invocation runs for, how it was started, the credentials its requests may use, and
/// the kv namespace it reads and writes (when the integration declares `[kv]`).
#[derive(Clone)]
pub struct Caller {
    pub subject: Subject,
    pub trigger: Trigger,
    pub credentials: Arc<dyn CredentialBroker>,
    pub kv: Option<Arc<dyn KvBackend>>,
}

/// Why an invocation did not produce valid output.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("unknown action `{action}`; this integration has: {available}")]
    UnknownAction { action: String, available: String },
    #[error("input is not valid JSON: {0}")]
    InputJson(JsonError),
    #[error("input does not match the `{action}` input schema:\n{violations}")]
    Input {
        action: String,
        violations: Violations,
    },
    #[error("output is not valid JSON: {0}")]
    OutputJson(JsonError),
    #[error("output does not match the `{action}` output schema:\n{violations}")]
    Output {
        action: String,
        violations: Violations,
    },
    #[error("the action returned an error [{code}]: {message}")]
    Guest { code: String, message: String },
    #[error("the guest trapped: {0}")]
    Trap(String),
    #[error("stopped by a limit: {0}")]
    Limit(LimitKind),
    #[error("host failure: {0}")]
    Host(String),
    /// The result is withheld: it could not be recorded.
    #[error("{0}; the result is withheld")]
    Audit(String),
}

/// Which limit stopped the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitKind {
    #[error("timeout of {0} reached")]
    Timeout(HumanDuration),
    #[error("memory limit of {0} reached")]
    Memory(ByteSize),
    #[error("wasm stack exhausted")]
    Stack,
    #[error("table limit reached")]
    Table,
    #[error("fuel budget of {0} exhausted")]
    Fuel(u64),
    #[error("output of {size} exceeds the limit of {limit}")]
    Output { size: ByteSize, limit: ByteSize },
    #[error("host memory budget of {0} reached")]
    HostMemory(ByteSize),
    #[error("more than {MAX_RESOURCES} host resources held at once")]
    HostResources,
    #[error("more than {MAX_HOST_CALLS} host calls")]
    HostCalls,
    #[error("more than {0} passed from the guest to the host at once")]
    HostCallData(ByteSize),
    #[error("a `fields` resource grew past {0} of headers")]
    HostFields(ByteSize),
}

impl InvokeError {
    /// Where a schema rejected the input or output: the first violation's keyword and its
    /// location in the schema. Never its place in the instance, whose object keys are the
    /// caller's data.
    fn validation_failure(&self) -> Option<ValidationFailure> {
        let (direction, violations) = match self {
            Self::Input { violations, .. } => ("input", violations),
            Self::Output { violations, .. } => ("output", violations),
            _ => return None,
        };
        violations.list.first().map(|v| ValidationFailure {
            direction: direction.to_string(),
            location: v.location.clone(),
            keyword: v.keyword.clone(),
        })
    }

    /// The exit code for this failure ([`Exit`], docs/cli.md): the summary's `exit_code`.
    pub fn exit_code(&self) -> u8 {
        Exit::from(self).code()
    }

    /// A stable, metadata-only class name for summaries, metrics and (later) the audit trail.
    pub fn class(&self) -> &'static str {
        match self {
            Self::UnknownAction { .. } => "unknown-action",
            Self::InputJson(_) | Self::Input { .. } => "input-rejected",
            Self::OutputJson(_) | Self::Output { .. } => "output-rejected",
            Self::Guest { .. } => "guest-error",
            Self::Trap(_) => "guest-trap",
            Self::Limit(LimitKind::Timeout(_)) => "limit-timeout",
            Self::Limit(LimitKind::Memory(_)) => "limit-memory",
            Self::Limit(LimitKind::Stack) => "limit-stack",
            Self::Limit(LimitKind::Table) => "limit-table",
            Self::Limit(LimitKind::Fuel(_)) => "limit-fuel",
            Self::Limit(LimitKind::Output { .. }) => "limit-output",
            Self::Limit(
                LimitKind::HostMemory(_)
                | LimitKind::HostResources
                | LimitKind::HostCallData(_)
                | LimitKind::HostFields(_),
            ) => "limit-host-memory",
            Self::Limit(LimitKind::HostCalls) => "limit-host-calls",
            Self::Host(_) => "host-failure",
            Self::Audit(_) => "audit-unavailable",
        }
    }
}

/// The exit of an invocation that failed.
impl From<&InvokeError> for Exit {
    fn from(error: &InvokeError) -> Self {
        match error {
            InvokeError::UnknownAction { .. } => Self::Usage,
            InvokeError::InputJson(_)
            | InvokeError::Input { .. }
            | InvokeError::OutputJson(_)
            | InvokeError::Output { .. } => Self::Schema,
            InvokeError::Guest { .. } | InvokeError::Trap(_) => Self::Guest,
            InvokeError::Limit(_) => Self::Limit,
            InvokeError::Host(_) | InvokeError::Audit(_) => Self::Host,
        }
    }
}

/// A one-line, metadata-only account of an invocation (what `--json` prints).
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub invocation: &'a InvocationId,
    pub integration: String,
    pub action: &'a str,
    pub outcome: &'static str,
    pub exit_code: u8,
    pub duration_us: u128,
    pub memory_peak_bytes: u64,
    pub host_memory_peak_bytes: u64,
    pub host_resources_peak: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    pub log_lines: usize,
    pub log_dropped: u64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub egress: &'a [EgressEvent],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub egress_suppressed: &'a [Suppressed],
    #[serde(skip_serializing_if = "is_zero")]
    pub redactions: u64,
    /// Sequence number of the audit record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_record: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Invocation {
    /// The metadata-only audit record of this invocation of `integration`.
    pub fn audit_record(
        &self,
        integration: &Integration,
        subject: &Subject,
        trigger: Trigger,
    ) -> AuditEvent {
        let (outcome, validation) = match &self.result {
            Ok(_) => ("ok", None),
            Err(error) => (error.class(), error.validation_failure()),
        };
        // An action the integration does not declare is whatever the caller typed: not recorded.
        let action = integration
            .action_names()
            .contains(&self.action.as_str())
            .then(|| self.action.clone());
        AuditEvent::Invocation(Box::new(InvocationRecord {
            invocation: self.id.to_string(),
            subject: subject.clone(),
            integration: integration.code_identity(),
            trigger,
            action,
            outcome: outcome.to_string(),
            duration_us: self.duration.as_micros() as u64,
            memory_peak_bytes: self.memory_peak,
            host_memory_peak_bytes: self.host_memory_peak,
            host_resources_peak: self.host_resources_peak as u64,
            fuel_used: self.fuel_used,
            egress: self.egress.clone(),
            egress_suppressed: self.egress_suppressed.clone(),
            redactions: self.redactions,
            kv: self.kv,
            validation,
        }))
    }

    /// The summary of this invocation of `integration`.
    pub fn summary(&self, integration: &Integration) -> Summary<'_> {
        let (outcome, exit_code, error) = match &self.result {
            Ok(_) => ("ok", 0, None),
            Err(e) => (e.class(), e.exit_code(), Some(e.to_string())),
        };
        Summary {
            invocation: &self.id,
            integration: integration.label(),
            action: &self.action,
            outcome,
            exit_code,
            duration_us: self.duration.as_micros(),
            memory_peak_bytes: self.memory_peak,
            host_memory_peak_bytes: self.host_memory_peak,
            host_resources_peak: self.host_resources_peak,
            fuel_used: self.fuel_used,
            log_lines: self.log.lines.len(),
            log_dropped: self.log.dropped,
            egress: &self.egress,
            egress_suppressed: &self.egress_suppressed,
            redactions: self.redactions,
            audit_record: self.record,
            error,
        }
    }
}

impl Runtime {
    /// Runs `action` of `integration` on `input` (JSON text) in a fresh sandbox, for a local
    /// CLI caller with no credentials: requests under rules that name one are refused.
    pub async fn invoke(
        &self,
        integration: &Integration,
        config: &ValidatedConfig,
        action: &str,
        input: &str,
    ) -> Invocation {
        let caller = self.local_caller(self.no_credentials.clone());
        self.invoke_as(integration, config, &caller, action, input)
            .await
    }

    /// A local CLI caller (tenant and installation `local`) with `credentials`.
    pub fn local_caller(&self, credentials: Arc<dyn CredentialBroker>) -> Caller {
        Caller {
            subject: Subject::local(),
            trigger: Trigger::Cli,
            credentials,
            kv: None,
        }
    }

    /// Runs `action` as [`Self::invoke`] does, for `caller`. With an audit trail, each request
    /// is recorded before it is sent and the invocation before its result is returned; when
    /// the trail cannot take a record, the request or the result is refused.
    pub async fn invoke_as(
        &self,
        integration: &Integration,
        config: &ValidatedConfig,
        caller: &Caller,
        action: &str,
        input: &str,
    ) -> Invocation {
        let mut invocation = self
            .execute(integration, config, caller, action, input, Call::Action)
            .await;
        if let Some(trail) = &self.audit {
            let record = invocation.audit_record(integration, &caller.subject, caller.trigger);
            match trail.append(record).await {
                Ok(seq) => invocation.record = Some(seq),
                Err(unavailable) => invocation.result = Err(InvokeError::Audit(unavailable.0)),
            }
        }
        invocation
    }

    /// Asks the component for `action` as it is, past the host's checks: on input that is not
    /// JSON, with no egress, credentials, kv or config, unaudited. An action that parses its
    /// input first (as the guest helper's `handle` does) answers `invalid-input` before doing
    /// anything; one the code does not have answers `unknown-action`. `airlock check` asks this
    /// to find declared actions the component does not export.
    pub async fn probe(&self, integration: &Integration, action: &str) -> Invocation {
        let caller = self.local_caller(self.no_credentials.clone());
        let config = ValidatedConfig { json: "{}".into() };
        self.execute(
            integration,
            &config,
            &caller,
            action,
            PROBE_INPUT,
            Call::Probe,
        )
        .await
    }

    async fn execute(
        &self,
        integration: &Integration,
        config: &ValidatedConfig,
        caller: &Caller,
        action: &str,
        input: &str,
        call: Call,
    ) -> Invocation {
        let started = Instant::now();
        let id = InvocationId::new();
        // Refused input never gets a sandbox: validate before building any per-call state.
        let admitted = self.check_engine(integration).and_then(|()| match call {
            Call::Action => admit_input(integration, action, input).map(Some),
            Call::Probe => Ok(None),
        });
        let refused = |error| Invocation {
            id: id.clone(),
            action: action.to_string(),
            duration: started.elapsed(),
            memory_peak: 0,
            host_memory_peak: 0,
            host_resources_peak: 0,
            fuel_used: None,
            log: GuestLog::default(),
            egress: Vec::new(),
            egress_suppressed: Vec::new(),
            redactions: 0,
            kv: KvUse::default(),
            record: None,
            result: Err(error),
        };
        let schemas = match admitted {
            Ok(schemas) => schemas,
            Err(error) => return refused(error),
        };
        let limits = integration.limits();
        let journal: Arc<dyn EgressJournal> = match (&self.audit, call) {
            (Some(trail), Call::Action) => Arc::new(InvocationJournal::new(
                trail.clone(),
                id.to_string(),
                caller.subject.clone(),
            )),
            _ => Arc::new(NoJournal),
        };
        let egress = match call {
            Call::Action => integration.egress.clone(),
            Call::Probe => Arc::new(IntegrationEgress::new(
                EgressPolicy::new(Vec::new()),
                Default::default(),
            )),
        };
        let broker = BrokeredHttp::new(
            egress,
            self.egress.clone(),
            caller.credentials.clone(),
            journal,
            &caller.subject,
        );
        let kv = KvCtx::new(caller.kv.clone().zip(integration.kv_quota()));
        let scratch = (limits.scratch > 0)
            .then(|| Scratch::create(&self.scratch_root(), limits.scratch))
            .transpose();
        let state = match scratch
            .and_then(|scratch| HostState::new(limits, config.json.clone(), broker, kv, scratch))
        {
            Ok(state) => state,
            Err(e) => {
                return refused(InvokeError::Host(format!(
                    "cannot make the scratch directory: {e}"
                )));
            }
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limiter());
        store.set_hostcall_fuel(hostcall_bytes(limits));
        store.call_hook(|mut store, hook| {
            if matches!(hook, CallHook::ReturningFromHost) {
                store
                    .data_mut()
                    .after_host_call()
                    .map_err(wasmtime::Error::new)?;
            }
            Ok(())
        });
        let timeout = match call {
            Call::Action => limits.timeout,
            Call::Probe => limits.timeout.min(PROBE_TIMEOUT),
        };
        let deadline = Instant::now() + timeout;
        schedule(&mut store, deadline, self.settings.demote_after);
        if let Some(fuel) = self.settings.fuel {
            store
                .set_fuel(fuel)
                .expect("the engine meters fuel whenever a budget is set");
        }

        let result = self
            .run(integration, schemas, &mut store, deadline, action, input)
            .await;
        // Whatever the guest left in flight stops now, and is recorded as aborted.
        store.data().broker().end();
        let fuel_used = self
            .settings
            .fuel
            .map(|budget| budget.saturating_sub(store.get_fuel().unwrap_or(0)));
        let state = store.data_mut();
        let (egress, egress_suppressed) = state.broker().log().take();
        let mut log = state.log().take();
        state.broker().scrub_log(&mut log);
        Invocation {
            id,
            action: action.to_string(),
            duration: started.elapsed(),
            memory_peak: state.limiter().peak(),
            host_memory_peak: state.budget().peak(),
            host_resources_peak: state.budget().peak_resources(),
            fuel_used,
            log,
            egress,
            egress_suppressed,
            redactions: state.broker().redactions(),
            kv: state.kv().used(),
            record: None,
            result,
        }
    }

    /// Code compiled by another runtime's engine (other settings, other pool) never runs
    /// here: wasmtime would refuse it mid-instantiation, and the guest would take the blame.
    fn check_engine(&self, integration: &Integration) -> Result<(), InvokeError> {
        if wasmtime::Engine::same(integration.pre.engine(), &self.engine) {
            Ok(())
        } else {
            Err(InvokeError::Host(format!(
                "{} was loaded by another runtime; load it with the one that runs it",
                integration.label()
            )))
        }
    }

    /// Calls the guest on input that passed its schema, then checks what it returned (a probe's
    /// answer, which no schema judges, comes back as a JSON string).
    async fn run(
        &self,
        integration: &Integration,
        schemas: Option<&ActionSchemas>,
        store: &mut Store<HostState>,
        deadline: Instant,
        action: &str,
        input: &str,
    ) -> Result<Output, InvokeError> {
        let limits = *integration.limits();
        let call = async {
            let instance = integration
                .pre
                .instantiate_async(&mut *store)
                .instrument(tracing::info_span!("instantiate"))
                .await?;
            instance
                .airlock_integration_handler()
                .call_invoke(&mut *store, action, input)
                .instrument(tracing::info_span!("guest.run"))
                .await
        };
        // Epoch interruption stops wasm code; this stops a guest blocked in a host call, at the
        // same deadline. Dropping the call unwinds the guest without running any more of it.
        let returned = match tokio::time::timeout_at(deadline.into(), call).await {
            Err(_elapsed) => Err(InvokeError::Limit(LimitKind::Timeout(HumanDuration(
                limits.timeout,
            )))),
            Ok(Err(error)) => Err(self.classify_trap(&error, store.data_mut(), &limits)),
            Ok(Ok(Err(guest))) => Err(InvokeError::Guest {
                code: guest.code,
                message: guest.message,
            }),
            Ok(Ok(Ok(output))) => Ok(output),
        }?;

        if returned.len() as u64 > limits.output {
            return Err(InvokeError::Limit(LimitKind::Output {
                size: ByteSize(returned.len() as u64),
                limit: ByteSize(limits.output),
            }));
        }
        let Some(schemas) = schemas else {
            return Ok(Output::quoted(&returned));
        };
        let output =
            Document::parse(&returned, limits.output as usize).map_err(InvokeError::OutputJson)?;
        schemas
            .output
            .validate(&output)
            .map_err(|violations| InvokeError::Output {
                action: action.to_string(),
                violations,
            })?;
        Ok(Output::validated(returned))
    }

    /// Turns a failed call into the limit that stopped it, or a trap with its root cause.
    fn classify_trap(
        &self,
        error: &wasmtime::Error,
        state: &mut HostState,
        limits: &airlock_host_api::policy::Limits,
    ) -> InvokeError {
        match state.limiter().tripped() {
            Some(LimitTripped::Memory) => {
                return InvokeError::Limit(LimitKind::Memory(ByteSize(limits.memory)));
            }
            Some(LimitTripped::Table) => return InvokeError::Limit(LimitKind::Table),
            None => {}
        }
        let table_full = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<ResourceTableError>(),
                Some(ResourceTableError::Full)
            )
        });
        if table_full {
            state.budget().resources_exhausted();
        }
        match state.budget().tripped() {
            Some(HostLimitExceeded::Memory { limit, .. }) => {
                return InvokeError::Limit(LimitKind::HostMemory(limit));
            }
            Some(HostLimitExceeded::Resources) => {
                return InvokeError::Limit(LimitKind::HostResources);
            }
            Some(HostLimitExceeded::Calls) => return InvokeError::Limit(LimitKind::HostCalls),
            None => {}
        }
        if airlock_host_api::budget::fields_overflowed(error) {
            return InvokeError::Limit(LimitKind::HostFields(ByteSize(FIELD_SIZE_LIMIT as u64)));
        }
        if copied_too_much(error) {
            return InvokeError::Limit(LimitKind::HostCallData(ByteSize(
                hostcall_bytes(limits) as u64
            )));
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                InvokeError::Limit(LimitKind::Timeout(HumanDuration(limits.timeout)))
            }
            Some(Trap::StackOverflow) => InvokeError::Limit(LimitKind::Stack),
            Some(Trap::OutOfFuel) => {
                InvokeError::Limit(LimitKind::Fuel(self.settings.fuel.unwrap_or(0)))
            }
            Some(trap) => InvokeError::Trap(trap.to_string()),
            None => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => InvokeError::Trap(format!("the guest exited with status {}", exit.0)),
                None => InvokeError::Trap(error.root_cause().to_string()),
            },
        }
    }
}

/// What one host call may copy out of the guest: [`MAX_HOSTCALL_BYTES`], or the output limit if
/// that is larger, since the action's result is lifted under the same fuel.
fn hostcall_bytes(limits: &airlock_host_api::policy::Limits) -> usize {
    MAX_HOSTCALL_BYTES.max(usize::try_from(limits.output).unwrap_or(usize::MAX))
}

/// Whether wasmtime refused to lift a host call's arguments (or the result) for exceeding the
/// hostcall fuel. Its error type is private, so this matches the message of the pinned
/// wasmtime (=48.0.8); `sandbox::huge_host_call_arguments_are_refused_before_the_host_copies_them`
/// fails if an upgrade changes it.
fn copied_too_much(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains("fuel allocated for hostcalls"))
}

/// Checks that `integration` declares `action` and that `input` is valid for it, without
/// running anything: a run is refused before it is queued, as an invocation before it starts.
pub fn check_input(
    integration: &Integration,
    action: &str,
    input: &str,
) -> Result<(), InvokeError> {
    admit_input(integration, action, input).map(|_| ())
}

/// Finds the action and checks the input (size, strict JSON, schema) before any sandbox exists.
fn admit_input<'a>(
    integration: &'a Integration,
    action: &str,
    input: &str,
) -> Result<&'a ActionSchemas, InvokeError> {
    let schemas = integration
        .action(action)
        .ok_or_else(|| InvokeError::UnknownAction {
            action: action.to_string(),
            available: integration.action_names().join(", "),
        })?
        .map_err(|reason| InvokeError::Host(reason.to_string()))?;
    let document = Document::parse(input, integration.limits().input as usize)
        .map_err(InvokeError::InputJson)?;
    schemas
        .input
        .validate(&document)
        .map_err(|violations| InvokeError::Input {
            action: action.to_string(),
            violations,
        })?;
    Ok(schemas)
}
