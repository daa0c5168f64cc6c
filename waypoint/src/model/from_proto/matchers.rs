//! Envoy matchers → [`StringMatch`], [`HeaderMatch`], [`QueryMatch`], regexes and CIDRs.

use ipnet::IpNet;
use xds::pb::envoy::config::core::v3::CidrRange;
use xds::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, header_matcher::HeaderMatchSpecifier as H,
    query_parameter_matcher::QueryParameterMatchSpecifier as Q,
};
use xds::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};

use super::{At, ModelError};
use crate::model::{HeaderMatch, QueryMatch, Regex, RegexRewrite, StringMatch};

/// Regexes larger than this once compiled are rejected (RE2's program-size limit plays the
/// same role in Envoy).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn compile(at: &At<'_>, source: &str, pattern: &str) -> Result<Regex, ModelError> {
    let compiled = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| at.invalid(format_args!("regex {source:?}: {e}")))?;
    Ok(Regex {
        source: source.to_owned(),
        compiled,
    })
}

/// A `safe_regex` matching whole values (RE2 full match).
pub(super) fn regex(at: &At<'_>, m: &RegexMatcher) -> Result<Regex, ModelError> {
    compile(at, &m.regex, &format!("^(?:{})$", m.regex))
}

/// A `regex_rewrite`: the pattern unanchored, the RE2 substitution (`\1`) in the `regex`
/// crate's syntax (`${1}`).
pub(super) fn regex_rewrite(
    at: &At<'_>,
    r: &RegexMatchAndSubstitute,
) -> Result<RegexRewrite, ModelError> {
    let Some(p) = &r.pattern else {
        return Err(at.f("pattern").missing());
    };
    let pattern = compile(&at.f("pattern"), &p.regex, &p.regex)?;
    let groups = pattern.compiled.captures_len() - 1;
    let substitution = substitution(&at.f("substitution"), &r.substitution, groups)?;
    Ok(RegexRewrite {
        pattern,
        substitution,
    })
}

/// RE2's rewrite string (`\0`–`\9` groups, `\\` a backslash) as a `regex` replacement.
fn substitution(at: &At<'_>, s: &str, groups: usize) -> Result<String, ModelError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d) if d.is_ascii_digit() => {
                    let n = usize::from(d as u8 - b'0');
                    if n > groups {
                        return Err(
                            at.invalid(format_args!("\\{n} but the pattern has {groups} groups"))
                        );
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                _ => return Err(at.invalid("a backslash must be followed by a digit or '\\'")),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn non_empty(at: &At<'_>, v: &str) -> Result<String, ModelError> {
    if v.is_empty() {
        return Err(at.invalid("must not be empty"));
    }
    Ok(v.to_owned())
}

/// A `StringMatcher` (`custom` extensions are not supported).
pub(super) fn string_match(at: &At<'_>, m: &StringMatcher) -> Result<StringMatch, ModelError> {
    let ignore_case = m.ignore_case;
    Ok(match &m.match_pattern {
        None => return Err(at.f("match_pattern").missing()),
        Some(MatchPattern::Exact(v)) => StringMatch::Exact {
            value: v.clone(),
            ignore_case,
        },
        Some(MatchPattern::Prefix(v)) => StringMatch::Prefix {
            value: non_empty(&at.f("prefix"), v)?,
            ignore_case,
        },
        Some(MatchPattern::Suffix(v)) => StringMatch::Suffix {
            value: non_empty(&at.f("suffix"), v)?,
            ignore_case,
        },
        Some(MatchPattern::Contains(v)) => StringMatch::Contains {
            value: non_empty(&at.f("contains"), v)?,
            ignore_case,
        },
        Some(MatchPattern::SafeRegex(r)) => StringMatch::Regex(regex(&at.f("safe_regex"), r)?),
        Some(MatchPattern::Custom(_)) => {
            return Err(at.f("custom").unsupported("custom string matchers"));
        }
    })
}

fn plain(value: &str) -> StringMatch {
    StringMatch::Exact {
        value: value.to_owned(),
        ignore_case: false,
    }
}

/// A `HeaderMatcher`. The name is lower-cased. `present_match: false` becomes an inverted
/// presence match; the deprecated `exact_match: ""` (which Envoy treats as "any value") and an
/// unset specifier become presence matches. `range_match` is not supported.
pub(super) fn header_match(at: &At<'_>, h: &HeaderMatcher) -> Result<HeaderMatch, ModelError> {
    if h.name.is_empty() {
        return Err(at.f("name").invalid("must not be empty"));
    }
    let mut invert = h.invert_match;
    #[allow(deprecated)]
    let value = match &h.header_match_specifier {
        None => StringMatch::Present,
        Some(H::PresentMatch(present)) => {
            invert ^= !present;
            StringMatch::Present
        }
        Some(H::ExactMatch(v)) if v.is_empty() => StringMatch::Present,
        Some(H::ExactMatch(v)) => plain(v),
        Some(H::PrefixMatch(v)) => StringMatch::Prefix {
            value: v.clone(),
            ignore_case: false,
        },
        Some(H::SuffixMatch(v)) => StringMatch::Suffix {
            value: v.clone(),
            ignore_case: false,
        },
        Some(H::ContainsMatch(v)) => StringMatch::Contains {
            value: v.clone(),
            ignore_case: false,
        },
        Some(H::SafeRegexMatch(r)) => StringMatch::Regex(regex(&at.f("safe_regex_match"), r)?),
        Some(H::StringMatch(m)) => string_match(&at.f("string_match"), m)?,
        Some(H::RangeMatch(_)) => {
            return Err(at.f("range_match").unsupported("range header matches"));
        }
    };
    Ok(HeaderMatch {
        name: h.name.to_ascii_lowercase(),
        value,
        invert,
        missing_as_empty: h.treat_missing_header_as_empty,
    })
}

/// A `QueryParameterMatcher`; `present_match` (either value, as in Envoy) or no specifier
/// means "present".
pub(super) fn query_match(
    at: &At<'_>,
    q: &QueryParameterMatcher,
) -> Result<QueryMatch, ModelError> {
    let value = match &q.query_parameter_match_specifier {
        Some(Q::StringMatch(m)) => Some(string_match(&at.f("string_match"), m)?),
        Some(Q::PresentMatch(_)) | None => None,
    };
    Ok(QueryMatch {
        name: non_empty(&at.f("name"), &q.name)?,
        value,
    })
}

/// A `CidrRange` (an unset `prefix_len` is 0, as in Envoy); host bits are masked.
pub(super) fn cidr(at: &At<'_>, c: &CidrRange) -> Result<IpNet, ModelError> {
    let ip: std::net::IpAddr = c.address_prefix.parse().map_err(|_| {
        at.f("address_prefix")
            .invalid(format_args!("{:?} is not an IP address", c.address_prefix))
    })?;
    let len = c.prefix_len.as_ref().map_or(0, |v| v.value);
    let len = u8::try_from(len).unwrap_or(u8::MAX);
    IpNet::new(ip, len)
        .map(|n| n.trunc())
        .map_err(|_| at.f("prefix_len").invalid("longer than the address"))
}
