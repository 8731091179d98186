//! `GET /v2/openapi.json`: an OpenAPI 3.1 document of the binding surface (bindings, service
//! instances, apps, spaces, organizations, jobs), generated from the code so that it cannot drift:
//! each operation is the `#[utoipa::path]` attribute on the handler that serves it, and each
//! response schema is derived (`ToSchema`) from the very type the handler renders. What is written
//! by hand is here: the schemas of the few types that serialize themselves (timestamps, links,
//! `{}`, volume mounts), the list parameters (from `api::query`'s limits and each list's `q`
//! keys), the request bodies (the handlers read them field by field), CC's error responses and
//! the auth schemes. `tests/openapi.rs` checks the document against the OpenAPI 3.1 schema and
//! against the running server. Built once; served without auth, like `/v2/info`.

use std::borrow::Cow;
use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityRequirement,
    SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use super::bindings::{BindingEntity, VolumeMounts};
use super::jobs::JobDoc;
use crate::api::query::{DEFAULT_PER_PAGE, MAX_INLINE_DEPTH, MAX_PER_PAGE};
use crate::api::render::{EmptyObject, Link, MetadataRef, Resource, Ts};
use crate::db::repo;
pub use crate::error::ErrorBody as CfError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/openapi.json", web::get().to(serve));
}

async fn serve() -> HttpResponse {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOC.get_or_init(|| document().to_json().unwrap_or_default().into_bytes());
    HttpResponse::build(StatusCode::OK)
        .content_type(crate::api::JSON_CONTENT_TYPE)
        .body(body.clone())
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tether: Cloud Controller API v2, service bindings",
        description = "The part of Cloud Foundry's Cloud Controller API v2 that tether serves for \
            the service-binding lifecycle: bindings, the service instances and apps they join, \
            the spaces and organizations those live in, and the jobs of asynchronous deletes. \
            Documents are CC's: resources are `{metadata, entity}`, lists are pages of them, \
            errors are CC's error body (`CfError`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::bindings::list,
        super::bindings::create,
        super::bindings::get,
        super::bindings::delete,
        super::bindings::parameters,
        super::bindings::list_for_app,
        super::bindings::delete_from_app,
        super::bindings::list_for_instance,
        super::bindings::list_for_upsi,
        super::env::unused_credentials,
        super::instances::list,
        super::instances::create,
        super::instances::get,
        super::instances::delete,
        super::instances::update,
        super::instances::list_in_space,
        super::instances::list_upsi,
        super::instances::get_upsi,
        super::apps::list,
        super::apps::get,
        super::apps::list_in_space,
        super::spaces::list,
        super::spaces::get,
        super::spaces::list_in_org,
        super::brokers::list_space_services,
        super::orgs::list,
        super::orgs::get,
        super::jobs::get,
        super::summary::feature_flag,
    ),
    // `Metadata` is `Resource`'s default type argument, which the derive does not collect.
    components(schemas(CfError, crate::api::render::Metadata)),
    modifiers(&Conventions),
    tags(
        (name = "service_bindings", description = "Bindings of service instances to apps"),
        (name = "service_instances", description = "Managed and user-provided service instances"),
        (name = "apps", description = "Apps (metadata only: nothing runs)"),
        (name = "spaces", description = "Spaces"),
        (name = "organizations", description = "Organizations"),
        (name = "jobs", description = "Jobs of asynchronous operations"),
        (name = "feature_flags", description = "CC's feature flags (fixed at their defaults)"),
    ),
)]
struct ApiDoc;

/// What every operation shares: CC's error responses, the auth schemes, the API version.
struct Conventions;

/// The name of the shared error response and of its body's schema.
pub const CF_ERROR: &str = "CfError";

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.version = super::info::API_VERSION.to_string();
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .responses
            .insert(CF_ERROR.to_string(), RefOr::T(cf_error_response()));
        components.add_security_scheme("bearer", bearer_scheme());
        components.add_security_scheme("uaa", uaa_scheme());
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("uaa", Vec::<String>::new()),
        ]);
        answer_failures_with_cf_error(doc);
    }
}

/// The shared error response: CC's error body.
fn cf_error_response() -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(
            "A Cloud Controller error: `description` for people, `error_code` \
             (`CF-<Name>`) and `code` (CC's number) for programs; broker failures \
             also carry `http` (the broker's method and status).",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(CF_ERROR)))
                .build(),
        )
        .build()
}

fn bearer_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A UAA token (tether's built-in issuer or a configured UAA): \
                 `Authorization: bearer <token>`. Scopes: `cloud_controller.read` to \
                 read, `cloud_controller.write` to change, `cloud_controller.admin` for \
                 everything.",
            ))
            .build(),
    )
}

fn uaa_scheme() -> SecurityScheme {
    SecurityScheme::OAuth2(OAuth2::with_description(
        [Flow::Password(Password::new(
            "/oauth/token",
            Scopes::from_iter([
                ("cloud_controller.read", "Read resources"),
                (
                    "cloud_controller.write",
                    "Create, change and delete resources",
                ),
                ("cloud_controller.admin", "Everything, in every space"),
            ]),
        ))],
        "tether's built-in, UAA-compatible token endpoint (the password grant, as the \
         cf CLI uses it with client `cf` and an empty secret).",
    ))
}

/// Every operation answers its failures with CC's error body; the statuses an operation
/// documents itself keep their descriptions.
fn answer_failures_with_cf_error(doc: &mut utoipa::openapi::OpenApi) {
    let error: RefOr<utoipa::openapi::Response> = RefOr::Ref(Ref::from_response_name(CF_ERROR));
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for status in ["401", "403", "4XX", "5XX"] {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error.clone());
            }
        }
    }
}

// --- schemas of the types that serialize themselves -----------------------------------------

/// Always `null` (fields CC renders as `null`).
pub fn null() -> Schema {
    Schema::Object(ObjectBuilder::new().schema_type(Type::Null).build())
}

impl PartialSchema for Ts {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"))
            .description(Some("A UTC time to the second, as CC renders it"))
            .examples(["2016-06-08T16:41:42Z"])
            .into()
    }
}

impl ToSchema for Ts {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

impl PartialSchema for Link<'_> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uri-reference".into())))
            .pattern(Some("^/v2/"))
            .description(Some("A resource's path on this API"))
            .into()
    }
}

impl ToSchema for Link<'_> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Link")
    }
}

impl PartialSchema for EmptyObject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(0))
            .description(Some("Always `{}` (as CC renders it)"))
            .into()
    }
}

impl ToSchema for EmptyObject {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EmptyObject")
    }
}

impl PartialSchema for VolumeMounts {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property("container_dir", text())
                    .property("mode", text())
                    .property("device_type", text()),
            )
            .description(Some(
                "The broker's volume mounts, as CC shows them: only `container_dir`, `mode` \
                 and `device_type` (the driver and device config can hold secrets)",
            ))
            .into()
    }
}

impl ToSchema for VolumeMounts {}

// --- list parameters --------------------------------------------------------------------------

/// CC's list parameters (`api::query::ListParams`), with the keys `q` accepts on this list,
/// whether it orders by name, and what `inline-relations-depth` embeds in it.
fn list_parameters(
    filters: &[&str],
    extensions: &[QExtension],
    by_name: bool,
    embeds: Option<&str>,
) -> Vec<Parameter> {
    let order_by: &[&str] = if by_name {
        &["id", "created_at", "name"]
    } else {
        &["id", "created_at"]
    };
    vec![
        query_parameter(
            "page",
            "The page to show (from 1)".into(),
            integer(1, None, 1).into(),
        ),
        query_parameter(
            "results-per-page",
            "Resources per page".into(),
            integer(1, Some(MAX_PER_PAGE), DEFAULT_PER_PAGE).into(),
        ),
        query_parameter(
            "order-direction",
            "Order of the resources".into(),
            words(&["asc", "desc"], Some("asc")).into(),
        ),
        query_parameter(
            "order-by",
            "What to order by (`id`, the default, is creation order)".into(),
            words(order_by, Some("id")).into(),
        ),
        query_parameter(
            "inline-relations-depth",
            inline_depth_description(embeds),
            integer(0, Some(MAX_INLINE_DEPTH.into()), 0).into(),
        ),
        q_parameter(filters, extensions),
    ]
}

/// A `q` key that is tether's extension (CC refuses it), with the values it takes (with `:`
/// or ` IN `; any other value is a `BadQueryParameter`).
pub struct QExtension {
    pub key: &'static str,
    pub values: &'static [&'static str],
}

/// An optional query parameter.
fn query_parameter(name: &str, description: String, schema: RefOr<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An integer from `min` (to `max`, if any), `default` when not given.
fn integer(min: i64, max: Option<i64>, default: i64) -> ObjectBuilder {
    let mut b = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as f64))
        .default(Some(default.into()));
    if let Some(max) = max {
        b = b.maximum(Some(max as f64));
    }
    b
}

/// One of `values`.
fn words(values: &[&str], default: Option<&str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .default(default.map(Into::into))
}

fn inline_depth_description(embeds: Option<&str>) -> String {
    match embeds {
        Some(what) => format!(
            "Embeds {what} beside their `*_url` (to-one relations as objects, to-many \
             as arrays of at most 50), up to depth {MAX_INLINE_DEPTH}"
        ),
        None => format!(
            "Accepted (up to depth {MAX_INLINE_DEPTH}), as CC accepts it, but this list \
             embeds nothing"
        ),
    }
}

/// `q`: repeatable filters on the list's keys. CC's keys share one pattern; each of tether's
/// extension keys has its own, which names the values it takes (then the items are `anyOf`
/// them).
fn q_parameter(filters: &[&str], extensions: &[QExtension]) -> Parameter {
    let cc_keys: Vec<&str> = filters
        .iter()
        .copied()
        .filter(|k| !extensions.iter().any(|e| e.key == *k))
        .collect();
    let mut description = format!(
        "Filters, all of which must hold: `key:value`, `key IN a,b`, `key>=v`, \
         `key<=v`, `key<v`, `key>v`; `;` joins several in one `q`. Keys: {}",
        backquoted(&cc_keys)
    );
    let cc_items = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^({})( IN |:|>=|<=|<|>)", cc_keys.join("|"))));
    let items: RefOr<Schema> =
        if extensions.is_empty() {
            cc_items.into()
        } else {
            let mut any = AnyOfBuilder::new().item(cc_items);
            for e in extensions {
                description.push_str(&format!(
                    "; tether's extension: `{}` (`:` or ` IN `; {})",
                    e.key,
                    backquoted(e.values)
                ));
                any = any.item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                    format!("^({})(:| IN )({})(,|;|$)", e.key, e.values.join("|")),
                )));
            }
            any.into()
        };
    ParameterBuilder::new()
        .name("q")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .style(Some(ParameterStyle::Form))
        .explode(Some(true))
        .schema(Some(ArrayBuilder::new().items(items)))
        .example(
            cc_keys
                .first()
                .map(|k| serde_json::json!([format!("{k}:value")])),
        )
        .build()
}

fn backquoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! list_query {
    ($(#[$doc:meta])* $name:ident, $filters:expr, by_name = $by_name:expr, embeds = $embeds:expr) => {
        list_query!($(#[$doc])* $name, $filters, extensions = &[], by_name = $by_name, embeds = $embeds);
    };
    ($(#[$doc:meta])* $name:ident, $filters:expr, extensions = $extensions:expr, by_name = $by_name:expr, embeds = $embeds:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoParams for $name {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                list_parameters($filters, $extensions, $by_name, $embeds)
            }
        }
    };
}

list_query!(
    /// The parameters of binding lists.
    BindingsQuery,
    repo::bindings::FILTERS,
    extensions = &[QExtension {
        key: repo::bindings::STATE_FILTER,
        values: &super::bindings::OPERATION_STATES,
    }],
    by_name = false,
    embeds = Some("the app and the service instance (and at depth 2 their spaces and the plan)")
);
list_query!(
    /// The parameters of managed service instance lists.
    InstancesQuery,
    repo::instances::FILTERS,
    by_name = true,
    embeds = Some(
        "the space, the plan and the bindings (and at depth 2 the organization and the service)"
    )
);
list_query!(
    /// The parameters of user-provided service instance lists.
    UpsiQuery,
    repo::instances::UPSI_FILTERS,
    by_name = true,
    embeds = None
);
list_query!(
    /// The parameters of app lists.
    AppsQuery,
    repo::apps::FILTERS,
    by_name = true,
    embeds = Some("the space and the bindings (and at depth 2 the organization)")
);
list_query!(
    /// The parameters of space lists.
    SpacesQuery,
    repo::spaces::FILTERS,
    by_name = true,
    embeds = None
);
list_query!(
    /// The parameters of organization lists.
    OrgsQuery,
    repo::orgs::FILTERS,
    by_name = true,
    embeds = None
);

list_query!(
    /// The parameters of service lists.
    ServicesQuery,
    repo::brokers::SERVICE_FILTERS,
    by_name = true,
    embeds = None
);

// --- request bodies (the handlers read them field by field) --------------------------------

/// `POST /v2/service_bindings`.
#[derive(ToSchema)]
#[allow(dead_code)] // a document, never built
pub struct CreateServiceBinding {
    pub app_guid: String,
    pub service_instance_guid: String,
    pub name: Option<String>,
    /// Passed to the broker as the bind request's `parameters`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<()>,
    /// tether's Code Engine extension: the role of the credentials to create.
    pub role: Option<String>,
    /// tether's Code Engine extension: a prefix for the app's environment variables.
    pub prefix: Option<String>,
    /// tether's Code Engine extension: bind an existing service key (by guid) instead of
    /// creating credentials; not with `service_key_name`.
    pub service_key_guid: Option<String>,
    /// As `service_key_guid`, by the key's name.
    pub service_key_name: Option<String>,
    /// tether's Code Engine extension: use the credential of this other binding of the same
    /// instance ("existing secret"; no broker call; not with a service key).
    pub credential_binding_guid: Option<String>,
}

/// `PUT /v2/service_instances/:guid`: each field only when it changes.
#[derive(ToSchema)]
#[allow(dead_code)] // a document, never built
pub struct UpdateServiceInstance {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    /// A plan of the same service (the service must allow plan changes).
    pub service_plan_guid: Option<String>,
    /// Passed to the broker's update as `parameters`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<()>,
}

/// `POST /v2/service_instances`.
#[derive(ToSchema)]
#[allow(dead_code)] // a document, never built
pub struct CreateServiceInstance {
    pub name: String,
    pub space_guid: String,
    pub service_plan_guid: String,
    /// Passed to the broker as the provision request's `parameters`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<()>,
    pub tags: Option<Vec<String>>,
}

/// What an asynchronous delete answers: the binding (broker still unbinding, with
/// `accepts_incomplete=true`) or a job (`async=true`).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a document, never built
pub enum DeleteAccepted {
    Binding(Box<Resource<BindingEntity<'static>, MetadataRef<'static>>>),
    Job(JobDoc),
}
