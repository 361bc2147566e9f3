//! The shop's web app, served by the API process on its HTTP side (same origin as the payment
//! callback and the sandbox): the customer's pages (`/`), the admin console (`/admin`) and, in
//! development, a sign-in page that mints the same tokens `starter token` does. The pages are
//! static HTML and a small script (`starter/web/`, no build step); everything they show or
//! change goes through [`api`], a thin JSON layer over the gRPC services' own code, with the
//! same tokens, rules and status codes. No business rule lives here.

pub mod api;
pub mod json;

use crate::app::State;
use axum::Router;
use axum::extract::{Form, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

/// The cookie the pages keep the bearer token in (a proxy in front of the API may set it from
/// the shop's identity provider).
pub const TOKEN_COOKIE: &str = "sw_token";

const SHOP: &str = include_str!("../../web/shop.html");
const ADMIN: &str = include_str!("../../web/admin.html");
const SIGNIN: &str = include_str!("../../web/signin.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");

pub fn router(state: Arc<State>) -> Router<Arc<State>> {
    let mut r = Router::new()
        .route("/", get(|| async { Html(SHOP) }))
        .route("/admin", get(|| async { Html(ADMIN) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE) }))
        .route("/signout", get(sign_out))
        .merge(api::router());
    if state.cfg.env == sellwindow_runtime::Env::Development {
        r = r.route("/signin", get(|| async { Html(SIGNIN) }).post(sign_in));
    } else {
        r = r.route("/signin", get(production_sign_in));
    }
    r
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
    #[serde(default)]
    admin: Option<String>,
}

/// Development only: a token for the name given (the admin's, when asked), kept in a cookie.
async fn sign_in(AxState(s): AxState<Arc<State>>, Form(f): Form<SignIn>) -> Response {
    let admin = f.admin.is_some();
    let name = f.name.trim();
    if !admin && sellwindow_domain::CustomerId::parse(name.to_string()).is_err() {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>Choose a name of letters, digits and dashes. <a href=/signin>Back</a></p>"),
        )
            .into_response();
    }
    let sub = if admin { "admin" } else { name };
    let token = s.auth.mint(sub, admin, 12 * 3600);
    let cookie =
        format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200");
    let to = if admin { "/admin" } else { "/" };
    ([(header::SET_COOKIE, cookie)], Redirect::to(to)).into_response()
}

async fn production_sign_in() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<p>Sign in through the shop's identity provider: the pages use the bearer token it \
             gives (an <code>Authorization</code> header or the <code>sw_token</code> cookie set \
             by the proxy in front of this service).</p>",
        ),
    )
        .into_response()
}

async fn sign_out() -> Response {
    let cookie = format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response()
}

/// The caller's bearer token: the `Authorization` header, else the pages' cookie.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return h.strip_prefix("Bearer ").map(str::to_string);
    }
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.to_string())
}
