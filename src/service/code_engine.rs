//! IBM Code Engine's binding features (seed 000) as v2 extensions: the credential's role, the
//! environment-variable prefix, binding with an existing credential (a service key).

use serde_json::Value;

use crate::db::models::{Service, ServicePlan};
use crate::error::{ApiError, ApiResult};

/// IAM's standard service roles, offered when a service declares none.
pub const STANDARD_ROLES: &[&str] = &["Reader", "Writer", "Manager"];

fn declared_roles(extra: Option<&str>) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(extra?).ok()?;
    let roles: Vec<String> = v
        .get("roles")?
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    (!roles.is_empty()).then_some(roles)
}

/// The roles a plan offers: declared in the plan's catalog metadata (`metadata.roles`), else the
/// service's, else IAM's standard three.
pub fn offered_roles(service: &Service, plan: &ServicePlan) -> Vec<String> {
    declared_roles(plan.extra.as_deref())
        .or_else(|| declared_roles(service.extra.as_deref()))
        .unwrap_or_else(|| STANDARD_ROLES.iter().map(|s| s.to_string()).collect())
}

/// The role for a new credential: the requested one if offered; by default `Manager`, or the
/// first role the service offers if it has no Manager.
pub fn resolve_role(
    service: &Service,
    plan: &ServicePlan,
    requested: Option<&str>,
) -> ApiResult<String> {
    let offered = offered_roles(service, plan);
    match requested {
        Some(r) => offered
            .iter()
            .find(|o| o.as_str() == r)
            .cloned()
            .ok_or_else(|| {
                ApiError::ServiceBindingInvalid(format!(
                    "The role '{r}' is not offered by service {}. Valid roles: {}.",
                    service.label,
                    offered.join(", ")
                ))
            }),
        None => Ok(offered
            .iter()
            .find(|o| o.as_str() == "Manager")
            .or_else(|| offered.first())
            .cloned()
            .unwrap_or_else(|| "Manager".to_string())),
    }
}

/// The seed's default binding name, `<app>-app-ce-service-binding-<5 random>` (seed 000:
/// `my-application-app-ce-service-binding-abcde`). The app's name is lower-cased, and every
/// character CC does not allow in binding names becomes `-`, so that the result passes
/// [`super::bindings::validate_name`] (at most 255 characters).
pub fn default_binding_name(app_name: &str) -> String {
    const SUFFIX: &str = "-app-ce-service-binding-";
    let app: String = app_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .take(255 - SUFFIX.len() - 5)
        .collect();
    format!("{app}{SUFFIX}{}", random_suffix())
}

/// `generated` (a [`default_binding_name`]) with a fresh random suffix: for a name that one of
/// the app's other bindings already has.
pub fn redraw_binding_name_suffix(generated: &str) -> String {
    // The suffix is five ASCII characters, so the cut is on a character boundary.
    let head = generated
        .get(..generated.len().saturating_sub(5))
        .unwrap_or_default();
    format!("{head}{}", random_suffix())
}

/// Five characters of `[a-z0-9]`, from a fresh v4 UUID's random bits.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut n = uuid::Uuid::new_v4().as_u128();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// A prefix must make valid environment variable names: a letter or underscore, then letters,
/// digits, underscores; at most 63 characters.
pub fn validate_prefix(prefix: &str) -> ApiResult<()> {
    let mut chars = prefix.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let ok_rest = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_first || !ok_rest || prefix.len() > 63 {
        return Err(ApiError::ServiceBindingInvalid(format!(
            "The prefix '{prefix}' is invalid. A prefix starts with a letter or underscore, contains only letters, digits and underscores, and has at most 63 characters."
        )));
    }
    Ok(())
}

/// `cloud-object-storage` → `CLOUD_OBJECT_STORAGE`.
pub fn upper_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_underscore = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
            last_underscore = false;
        } else if !last_underscore && !out.is_empty() {
            out.push('_');
            last_underscore = true;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Candidate prefixes for a binding without an explicit one: the service label; if the app
/// already uses it (a second instance of the same service), label and instance name; last, the
/// label and part of the binding guid.
pub fn derived_prefixes(label: &str, instance_name: &str, binding_guid: &str) -> Vec<String> {
    let base = upper_snake(label);
    vec![
        base.clone(),
        format!("{base}_{}", upper_snake(instance_name)),
        format!(
            "{base}_{}",
            &binding_guid.replace('-', "")[..8].to_ascii_uppercase()
        ),
    ]
}

/// Flattens credentials into `PREFIX_KEY=value` variables: keys upper-snake-cased, strings as is,
/// everything else as JSON.
pub fn flatten_credentials(prefix: &str, credentials: &Value) -> Vec<(String, String)> {
    let Some(map) = credentials.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(k, v)| {
            let name = format!("{prefix}_{}", upper_snake(k).trim_start_matches('_'));
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_snake_names() {
        assert_eq!(upper_snake("cloud-object-storage"), "CLOUD_OBJECT_STORAGE");
        assert_eq!(upper_snake("user-provided"), "USER_PROVIDED");
        assert_eq!(upper_snake("a..b"), "A_B");
        assert_eq!(upper_snake("9lives"), "_9LIVES");
        assert_eq!(upper_snake("--"), "_");
    }

    #[test]
    fn default_names_follow_the_seed() {
        let name = default_binding_name("My Application");
        let (head, suffix) = name.rsplit_once('-').unwrap();
        assert_eq!(head, "my-application-app-ce-service-binding");
        assert_eq!(suffix.len(), 5);
        assert!(super::super::bindings::validate_name(&name).is_ok());
        let long = default_binding_name(&"é".repeat(400));
        assert_eq!(long.chars().count(), 255);
        assert!(super::super::bindings::validate_name(&long).is_ok());
        assert_ne!(default_binding_name("a"), default_binding_name("a"));
        let redrawn = redraw_binding_name_suffix(&name);
        assert_eq!(redrawn.len(), name.len());
        assert_eq!(redrawn.rsplit_once('-').unwrap().0, head);
        assert_ne!(redrawn, name);
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("MyPrefix").is_ok());
        assert!(validate_prefix("_X1").is_ok());
        assert!(validate_prefix("1X").is_err());
        assert!(validate_prefix("A-B").is_err());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix(&"A".repeat(64)).is_err());
    }

    #[test]
    fn flattening() {
        let v = serde_json::json!({"apikey": "k", "port": 5432, "nested": {"a": 1}});
        let mut vars = flatten_credentials("COS", &v);
        vars.sort();
        assert_eq!(
            vars,
            vec![
                ("COS_APIKEY".to_string(), "k".to_string()),
                ("COS_NESTED".to_string(), r#"{"a":1}"#.to_string()),
                ("COS_PORT".to_string(), "5432".to_string()),
            ]
        );
    }
}
