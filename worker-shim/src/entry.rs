//! The template Worker's fetch handler: `/pilot/v1/*` from outside goes to the `PilotNode`
//! Durable Object when it carries `Authorization: Bearer <PILOT_API_TOKEN>`.
//!
//! Without the `PILOT_API_TOKEN` secret the passthrough is off (404), so a deployed template
//! never exposes the node by accident. The token is compared in constant time.

use worker::{event, Context, Env, Headers, Request, RequestInit, Response};

use crate::api::{ApiError, ErrorCode};
use crate::token::bearer_matches;

/// The Durable Object binding in `wrangler.toml`.
pub const BINDING: &str = "PILOT";
/// Object name when `PILOT_NODE_NAME` is unset: one node per Worker.
pub const DEFAULT_NODE_NAME: &str = "default";
/// Path prefix of the passthrough.
const PASSTHROUGH_PREFIX: &str = "/pilot/v1/";

fn error(err: &ApiError) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(err.to_body())?
        .with_status(err.status())
        .with_headers(headers))
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let level = env.var("PILOT_LOG").ok().map(|v| v.to_string());
    crate::log::init(level.as_deref());
    let url = req.url()?;
    let Some(rest) = url
        .path()
        .strip_prefix(PASSTHROUGH_PREFIX)
        .map(str::to_string)
    else {
        return error(
            &ApiError::new(ErrorCode::BadRequest, "not found")
                .with_hint("the node's API is under /pilot/v1/ (see API.md)"),
        )
        .map(|r| r.with_status(404));
    };
    let expected = env.secret("PILOT_API_TOKEN").ok().map(|s| s.to_string());
    let Some(expected) = expected.filter(|t| !t.is_empty()) else {
        return error(
            &ApiError::new(ErrorCode::BadRequest, "the API passthrough is off")
                .with_hint("set the PILOT_API_TOKEN secret to enable /pilot/v1/"),
        )
        .map(|r| r.with_status(404));
    };
    let header = req.headers().get("authorization")?;
    if !bearer_matches(header.as_deref(), Some(&expected)) {
        return error(
            &ApiError::new(ErrorCode::BadRequest, "missing or wrong API token")
                .with_hint("send Authorization: Bearer <PILOT_API_TOKEN>"),
        )
        .map(|r| r.with_status(401));
    }
    let name = env
        .var("PILOT_NODE_NAME")
        .map(|v| v.to_string())
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NODE_NAME.to_string());
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(&name)?
        .get_stub()?;
    let mut target = format!("https://pilot.internal/v1/{rest}");
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let body = req.bytes().await?;
    let headers = Headers::new();
    if let Some(kind) = req.headers().get("content-type")? {
        headers.set("content-type", &kind)?;
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if !body.is_empty() {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    stub.fetch_with_request(Request::new_with_init(&target, &init)?)
        .await
}
