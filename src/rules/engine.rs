//! The one place the Rhai engine is built and hardened. Rules get arithmetic, logic,
//! strings, arrays, maps and functions, and nothing else: no file or module access, no
//! `eval`, no `sleep`, no clock of their own (time comes in the state they see), and
//! print/debug go to tracing. Every evaluation runs under operation, depth, size and
//! wall-clock limits.
//!
//! Host functions such as `alert()` only *record* a request in the evaluation's
//! collector (passed as the call's tag); they never perform I/O.

use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext, Position};

use crate::config::RuleLimits;
use crate::model::ActionRequest;

thread_local! {
    /// Wall-clock deadline of the evaluation running on this thread. Rhai's progress
    /// callback has no per-call context, and an evaluation never leaves its thread.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets the deadline for the current thread and clears it when dropped.
pub(crate) struct DeadlineGuard;

impl DeadlineGuard {
    pub(crate) fn set(timeout: Duration) -> Self {
        DEADLINE.with(|d| d.set(Some(Instant::now() + timeout)));
        DeadlineGuard
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
    }
}

/// The marker a timed-out evaluation terminates with.
pub(crate) const TIMEOUT_MARKER: &str = "nightdesk: rule exceeded its time limit";

/// What one evaluation asked for. Shared with host functions through the call's tag.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collector {
    requests: Arc<Mutex<Vec<ActionRequest>>>,
}

impl Collector {
    fn push(&self, request: ActionRequest) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }

    pub(crate) fn take(&self) -> Vec<ActionRequest> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn collector(ctx: &NativeCallContext) -> Result<Collector, Box<EvalAltResult>> {
    ctx.tag()
        .and_then(|tag| tag.clone().try_cast::<Collector>())
        .ok_or_else(|| "actions can only be requested from a rule hook".into())
}

fn non_empty(what: &str, value: &str) -> Result<(), Box<EvalAltResult>> {
    if value.trim().is_empty() {
        return Err(EvalAltResult::ErrorRuntime(
            format!("{what} must not be empty").into(),
            Position::NONE,
        )
        .into());
    }
    Ok(())
}

/// Build the engine every rule runs in.
pub fn harden(limits: &RuleLimits) -> Engine {
    let mut engine = Engine::new_raw();
    // The standard library minus LanguageCorePackage (sleep, exit) and BasicTimePackage
    // (timestamp): rules are pure functions of the state they are given.
    for package in [
        ArithmeticPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicFnPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(package);
    }
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.disable_symbol("export");
    engine.set_max_modules(0);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_variables(256);
    engine.set_max_functions(256);
    engine.set_strict_variables(true);
    // A misspelt field (`order.statsu`) is an error, not a silent `()`.
    engine.set_fail_on_invalid_map_property(true);
    engine
        .on_print(|text| tracing::info!(target: "nightdesk::rules::print", text, "Rule printed."));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "nightdesk::rules::debug", text, source = source.unwrap_or(""), line = pos.line().unwrap_or(0), "Rule debug.");
    });
    engine.on_progress(|operations| {
        // Reading the clock on every operation would dominate small rules.
        if operations % 256 != 0 {
            return None;
        }
        let expired = DEADLINE.with(|d| d.get().is_some_and(|deadline| Instant::now() > deadline));
        expired.then(|| Dynamic::from(TIMEOUT_MARKER))
    });
    register_actions(&mut engine);
    engine
}

fn register_actions(engine: &mut Engine) {
    engine.register_fn(
        "alert",
        |ctx: NativeCallContext, channel: &str, text: &str| -> Result<(), Box<EvalAltResult>> {
            non_empty("alert channel", channel)?;
            non_empty("alert text", text)?;
            collector(&ctx)?.push(ActionRequest::Alert {
                channel: channel.to_owned(),
                text: text.to_owned(),
            });
            Ok(())
        },
    );
}
