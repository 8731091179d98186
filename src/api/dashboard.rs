//! The read-only dashboard at `/dashboard`: three static files embedded in the binary
//! (`assets/dashboard/`, plain HTML, CSS and JavaScript: nothing to build, nothing fetched from
//! elsewhere). The page signs in and then reads only the public v2 API with the user's token,
//! like any other CF dashboard; this module serves the files and nothing else.
//!
//! Every dashboard response carries a strict Content-Security-Policy: scripts and styles only
//! from these files (no inline code, no `eval`), API calls only to this origin, no framing. Even
//! if broker- or user-supplied text were ever put into the page as markup, it could not run.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// The dashboard's Content-Security-Policy. `img-src data:` is for the inline favicon (which
/// spares the browser a request to `/favicon.ico`).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/dashboard/index.html"
    )),
    content_type: "text/html; charset=utf-8",
};
const APP_JS: Asset = Asset {
    body: include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/dashboard/app.js"
    )),
    content_type: "text/javascript; charset=utf-8",
};
const APP_CSS: Asset = Asset {
    body: include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/dashboard/app.css"
    )),
    content_type: "text/css; charset=utf-8",
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(index))
        .route("/dashboard/", web::get().to(index))
        .route("/dashboard/app.js", web::get().to(app_js))
        .route("/dashboard/app.css", web::get().to(app_css));
}

async fn index(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &INDEX, &TAG)
}

async fn app_js(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &APP_JS, &TAG)
}

async fn app_css(req: HttpRequest) -> HttpResponse {
    static TAG: OnceLock<String> = OnceLock::new();
    serve(&req, &APP_CSS, &TAG)
}

/// A strong ETag from the content: the files change only with the binary, so a browser
/// revalidates (`no-cache`) and gets a body-less 304 until tether is upgraded.
fn etag(asset: &Asset, cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        let digest = Sha256::digest(asset.body.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    })
}

/// `If-None-Match` names this tag (or is `*`).
fn not_modified(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

fn serve(req: &HttpRequest, asset: &Asset, cell: &'static OnceLock<String>) -> HttpResponse {
    let tag = etag(asset, cell);
    let mut resp = if not_modified(req, tag) {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok()
            .content_type(asset.content_type)
            .body(asset.body)
    };
    let h = resp.headers_mut();
    let fixed: [(header::HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    resp
}
