//! The routes that answer without forwarding: `redirect` and `direct_response`.

use http::StatusCode;
use xds::pb::envoy::config::core::v3::data_source::Specifier;
use xds::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
};

use super::{At, ModelError, matchers};
use crate::model::Redirect;

/// The redirect's scheme: `scheme_redirect` (lower-cased) or `https_redirect`.
fn scheme(s: Option<&SchemeRewriteSpecifier>) -> Option<String> {
    match s {
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) if !s.is_empty() => {
            Some(s.to_ascii_lowercase())
        }
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_owned()),
        _ => None,
    }
}

pub(super) fn redirect(at: &At<'_>, r: &RedirectAction) -> Result<Redirect, ModelError> {
    let mut out = Redirect {
        scheme: scheme(r.scheme_rewrite_specifier.as_ref()),
        host: Some(r.host_redirect.clone()).filter(|h| !h.is_empty()),
        port: match r.port_redirect {
            0 => None,
            p => Some(
                u16::try_from(p).map_err(|_| at.f("port_redirect").invalid("port above 65535"))?,
            ),
        },
        path: None,
        prefix_rewrite: None,
        regex_rewrite: None,
        strip_query: r.strip_query,
        status: match RedirectResponseCode::try_from(r.response_code) {
            Ok(RedirectResponseCode::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
            Ok(RedirectResponseCode::Found) => StatusCode::FOUND,
            Ok(RedirectResponseCode::SeeOther) => StatusCode::SEE_OTHER,
            Ok(RedirectResponseCode::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
            Ok(RedirectResponseCode::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
            Err(_) => {
                return Err(at
                    .f("response_code")
                    .invalid(format_args!("unknown code {}", r.response_code)));
            }
        },
    };
    match &r.path_rewrite_specifier {
        None => {}
        Some(PathRewriteSpecifier::PathRedirect(p)) => {
            out.path = Some(p.clone()).filter(|p| !p.is_empty());
        }
        Some(PathRewriteSpecifier::PrefixRewrite(p)) => {
            out.prefix_rewrite = Some(p.clone()).filter(|p| !p.is_empty());
        }
        Some(PathRewriteSpecifier::RegexRewrite(re)) => {
            out.regex_rewrite = Some(matchers::regex_rewrite(&at.f("regex_rewrite"), re)?);
        }
        Some(PathRewriteSpecifier::PathRewrite(_)) => {
            return Err(at.f("path_rewrite").unsupported("path templates"));
        }
    }
    Ok(out)
}

/// A `direct_response`: status in `[200, 600)` (Envoy's range), inline body.
pub(super) fn direct(
    at: &At<'_>,
    d: &DirectResponseAction,
) -> Result<(StatusCode, bytes::Bytes), ModelError> {
    let status = u16::try_from(d.status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            at.f("status")
                .invalid(format_args!("{} is not in [200, 600)", d.status))
        })?;
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => bytes::Bytes::new(),
        Some(Specifier::InlineString(s)) => bytes::Bytes::from(s.clone()),
        Some(Specifier::InlineBytes(b)) => bytes::Bytes::from(b.clone()),
        Some(_) => {
            return Err(at.f("body").unsupported("only inline bodies"));
        }
    };
    Ok((status, body))
}
