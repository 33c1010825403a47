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
use rhai::{Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position};

use super::reasons;
use crate::config::RuleLimits;
use crate::model::{ActionRequest, RefundLine, Subject};

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

/// How an action's idempotency key is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOption {
    /// Once per rule, subject, kind and content (the default).
    Content,
    /// As `Content`, but again each day or week (UTC) the condition holds.
    OncePer(Period),
    /// Once per rule and this key, whatever the content.
    Explicit(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
}

/// One action a rule asked for, before it gets its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedAction {
    pub request: ActionRequest,
    /// What it is about, when not the hook's own subject.
    pub subject: Option<Subject>,
    pub key: KeyOption,
    /// Wait for a person's approval, with why.
    pub hold: Option<String>,
}

/// A handle a rule gets back from an action function, so it can `hold()` it.
#[derive(Debug, Clone, Copy)]
pub struct ActionRef(usize);

/// What one evaluation asked for. Shared with host functions through the call's tag.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collector {
    requests: Arc<Mutex<Vec<RequestedAction>>>,
}

impl Collector {
    fn push(&self, request: RequestedAction) -> ActionRef {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests.push(request);
        ActionRef(requests.len() - 1)
    }

    fn hold(&self, action: ActionRef, reason: String) -> Result<(), Box<EvalAltResult>> {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(request) = requests.get_mut(action.0) else {
            return Err(runtime("hold() needs an action this hook asked for"));
        };
        request.hold = Some(reason);
        Ok(())
    }

    pub(crate) fn take(&self) -> Vec<RequestedAction> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn collector(ctx: &NativeCallContext) -> Result<Collector, Box<EvalAltResult>> {
    ctx.tag()
        .and_then(|tag| tag.clone().try_cast::<Collector>())
        .ok_or_else(|| "actions can only be requested from a rule hook".into())
}

fn runtime(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into().into(), Position::NONE).into()
}

fn non_empty(what: &str, value: &str) -> Result<(), Box<EvalAltResult>> {
    if value.trim().is_empty() {
        return Err(runtime(format!("{what} must not be empty")));
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

/// A string field of a state map.
fn text_field(map: &Map, field: &str) -> Option<String> {
    map.get(field).and_then(|v| v.clone().into_string().ok())
}

/// The subject a state map stands for (every map a hook receives names it).
fn subject_of(map: &Map, expected: &str, function: &str) -> Result<Subject, Box<EvalAltResult>> {
    let subject = text_field(map, "subject").unwrap_or_default();
    if !subject.starts_with(&format!("{expected}:")) {
        return Err(runtime(format!(
            "{function}() takes the {expected} a hook received"
        )));
    }
    Ok(Subject::from_stored(subject))
}

fn order_id(map: &Map, function: &str) -> Result<(Subject, String), Box<EvalAltResult>> {
    let subject = subject_of(map, "order", function)?;
    let id = text_field(map, "id").unwrap_or_default();
    Ok((subject, id))
}

/// `#{ key: "…", once_per: "day" | "week" }`.
fn key_option(options: &Map) -> Result<KeyOption, Box<EvalAltResult>> {
    let mut key = KeyOption::Content;
    for (name, value) in options {
        let value = value
            .clone()
            .into_string()
            .map_err(|_| runtime(format!("option {name} takes a string")))?;
        key = match (name.as_str(), value.as_str()) {
            ("key", k) if !k.trim().is_empty() => KeyOption::Explicit(k.to_owned()),
            ("once_per", "day") => KeyOption::OncePer(Period::Day),
            ("once_per", "week") => KeyOption::OncePer(Period::Week),
            ("once_per", other) => {
                return Err(runtime(format!(
                    "once_per is \"day\" or \"week\", not {other:?}"
                )));
            }
            (other, _) => {
                return Err(runtime(format!(
                    "unknown action option {other:?}; options are key, once_per"
                )));
            }
        };
    }
    Ok(key)
}

fn request(
    ctx: &NativeCallContext,
    request: ActionRequest,
    subject: Option<Subject>,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    let key = key_option(options)?;
    Ok(collector(ctx)?.push(RequestedAction {
        request,
        subject,
        key,
        hold: None,
    }))
}

fn alert(
    ctx: NativeCallContext,
    channel: &str,
    text: &str,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    non_empty("alert channel", channel)?;
    non_empty("alert text", text)?;
    request(
        &ctx,
        ActionRequest::Alert {
            channel: channel.to_owned(),
            text: text.to_owned(),
        },
        None,
        options,
    )
}

fn reply(
    ctx: NativeCallContext,
    message: Map,
    template: &str,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    non_empty("reply template", template)?;
    let subject = subject_of(&message, "message", "reply")?;
    let id = subject.as_str().trim_start_matches("message:").to_owned();
    let action = ActionRequest::Reply {
        message: id,
        template: template.to_owned(),
    };
    request(&ctx, action, Some(subject), options)
}

fn notify_buyer(
    ctx: NativeCallContext,
    order: Map,
    message_type: &str,
    template: &str,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    non_empty("notify_buyer template", template)?;
    let (subject, id) = order_id(&order, "notify_buyer")?;
    if let Some(problem) =
        reasons::unknown("message type", message_type, reasons::AMAZON_MESSAGE_TYPES)
    {
        return Err(runtime(problem));
    }
    let action = ActionRequest::NotifyBuyer {
        order: id,
        message_type: message_type.to_owned(),
        template: template.to_owned(),
    };
    request(&ctx, action, Some(subject), options)
}

fn refund(
    ctx: NativeCallContext,
    order: Map,
    spec: Map,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    let (subject, id) = order_id(&order, "refund")?;
    // Amazon releases nothing of a Pending order: there is nothing to refund.
    if text_field(&order, "status").as_deref() == Some("Pending") {
        return Err(runtime(format!(
            "order {id} is Pending: a Pending order can never be refunded"
        )));
    }
    let mut reason = None;
    let mut items = Vec::new();
    let mut amount = None;
    for (name, value) in spec {
        match name.as_str() {
            "reason" => reason = value.into_string().ok(),
            "amount" => amount = Some(value.to_string()),
            "items" => {
                let lines = value
                    .into_array()
                    .map_err(|_| runtime("refund items is an array"))?;
                for line in lines {
                    items.push(refund_line(line)?);
                }
            }
            other => {
                return Err(runtime(format!(
                    "unknown refund field {other:?}; fields are reason, items, amount"
                )));
            }
        }
    }
    let Some(reason) = reason else {
        return Err(runtime("refund needs a reason"));
    };
    if let Some(problem) = reasons::unknown_reason(
        "refund reason",
        &reason,
        reasons::AMAZON_REFUND_REASONS,
        &reasons::OTHER_REFUND_REASONS,
    ) {
        return Err(runtime(problem));
    }
    request(
        &ctx,
        ActionRequest::Refund {
            order: id,
            reason,
            items,
            amount,
        },
        Some(subject),
        options,
    )
}

/// An item id, or `#{id, quantity, amount}`.
fn refund_line(line: Dynamic) -> Result<RefundLine, Box<EvalAltResult>> {
    if line.is_string() {
        return Ok(RefundLine {
            item: line.to_string(),
            quantity: None,
            amount: None,
        });
    }
    let map = line
        .try_cast::<Map>()
        .ok_or_else(|| runtime("a refund item is an item id or #{id, quantity, amount}"))?;
    let item = text_field(&map, "id").ok_or_else(|| runtime("a refund item needs its id"))?;
    let quantity = map.get("quantity").and_then(|q| q.as_int().ok());
    let amount = map.get("amount").map(|a| a.to_string());
    Ok(RefundLine {
        item,
        quantity,
        amount,
    })
}

fn cancel(
    ctx: NativeCallContext,
    order: Map,
    reason: &str,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    let (subject, id) = order_id(&order, "cancel")?;
    let status = text_field(&order, "status").unwrap_or_default();
    if matches!(
        status.as_str(),
        "Pending" | "Shipped" | "Canceled" | "InvoiceUnconfirmed"
    ) {
        return Err(runtime(format!(
            "order {id} is {status}: only unshipped orders can be cancelled"
        )));
    }
    if let Some(problem) = reasons::unknown_reason(
        "cancel reason",
        reason,
        reasons::AMAZON_CANCEL_REASONS,
        &reasons::OTHER_CANCEL_REASONS,
    ) {
        return Err(runtime(problem));
    }
    request(
        &ctx,
        ActionRequest::Cancel {
            order: id,
            reason: reason.to_owned(),
        },
        Some(subject),
        options,
    )
}

fn tag(
    ctx: NativeCallContext,
    on: Map,
    name: &str,
    options: &Map,
) -> Result<ActionRef, Box<EvalAltResult>> {
    non_empty("tag name", name)?;
    let subject =
        text_field(&on, "subject").ok_or_else(|| runtime("tag() takes an order or a message"))?;
    request(
        &ctx,
        ActionRequest::Tag {
            name: name.to_owned(),
        },
        Some(Subject::from_stored(subject)),
        options,
    )
}

fn register_actions(engine: &mut Engine) {
    engine.register_type_with_name::<ActionRef>("Action");
    let none = Map::new;
    engine.register_fn(
        "alert",
        move |ctx: NativeCallContext, channel: &str, text: &str| alert(ctx, channel, text, &none()),
    );
    engine.register_fn(
        "alert",
        |ctx: NativeCallContext, channel: &str, text: &str, o: Map| alert(ctx, channel, text, &o),
    );
    engine.register_fn(
        "reply",
        move |ctx: NativeCallContext, msg: Map, template: &str| reply(ctx, msg, template, &none()),
    );
    engine.register_fn(
        "reply",
        |ctx: NativeCallContext, msg: Map, template: &str, o: Map| reply(ctx, msg, template, &o),
    );
    engine.register_fn(
        "notify_buyer",
        move |ctx: NativeCallContext, order: Map, kind: &str, template: &str| {
            notify_buyer(ctx, order, kind, template, &none())
        },
    );
    engine.register_fn(
        "notify_buyer",
        |ctx: NativeCallContext, order: Map, kind: &str, template: &str, o: Map| {
            notify_buyer(ctx, order, kind, template, &o)
        },
    );
    engine.register_fn(
        "refund",
        move |ctx: NativeCallContext, order: Map, spec: Map| refund(ctx, order, spec, &none()),
    );
    engine.register_fn(
        "refund",
        |ctx: NativeCallContext, order: Map, spec: Map, o: Map| refund(ctx, order, spec, &o),
    );
    engine.register_fn(
        "cancel",
        move |ctx: NativeCallContext, order: Map, reason: &str| cancel(ctx, order, reason, &none()),
    );
    engine.register_fn(
        "cancel",
        |ctx: NativeCallContext, order: Map, reason: &str, o: Map| cancel(ctx, order, reason, &o),
    );
    engine.register_fn("tag", move |ctx: NativeCallContext, on: Map, name: &str| {
        tag(ctx, on, name, &none())
    });
    engine.register_fn(
        "tag",
        |ctx: NativeCallContext, on: Map, name: &str, o: Map| tag(ctx, on, name, &o),
    );
    engine.register_fn("hold", |ctx: NativeCallContext, action: ActionRef| {
        collector(&ctx)?.hold(action, "held by the rule for approval".to_owned())
    });
    engine.register_fn(
        "hold",
        |ctx: NativeCallContext, action: ActionRef, reason: &str| {
            collector(&ctx)?.hold(action, reason.to_owned())
        },
    );
}
