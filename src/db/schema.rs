// One schema for both backends, restricted to the types diesel's `MultiConnection` supports:
// GUIDs and JSON documents are Text, times are naive-UTC Timestamps.

diesel::table! {
    organizations (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    spaces (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        organization_guid -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    apps (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        space_guid -> Text,
        state -> Text,
        memory -> BigInt,
        instances -> Integer,
        disk_quota -> BigInt,
        environment_json -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    service_brokers (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        broker_url -> Text,
        auth_username -> Text,
        auth_password -> Text,
        space_guid -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    services (id) {
        id -> BigInt,
        guid -> Text,
        service_broker_guid -> Text,
        unique_id -> Text,
        label -> Text,
        description -> Text,
        active -> Bool,
        bindable -> Bool,
        tags -> Text,
        requires -> Text,
        extra -> Nullable<Text>,
        plan_updateable -> Bool,
        bindings_retrievable -> Bool,
        instances_retrievable -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    service_plans (id) {
        id -> BigInt,
        guid -> Text,
        service_guid -> Text,
        unique_id -> Text,
        name -> Text,
        description -> Text,
        free -> Bool,
        bindable -> Nullable<Bool>,
        plan_updateable -> Nullable<Bool>,
        public -> Bool,
        active -> Bool,
        extra -> Nullable<Text>,
        schemas -> Nullable<Text>,
        maximum_polling_duration -> Nullable<BigInt>,
        maintenance_info -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    service_plan_visibilities (id) {
        id -> BigInt,
        guid -> Text,
        service_plan_guid -> Text,
        organization_guid -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    service_instances (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        space_guid -> Text,
        is_user_provided -> Bool,
        service_plan_guid -> Nullable<Text>,
        credentials -> Nullable<Text>,
        syslog_drain_url -> Nullable<Text>,
        route_service_url -> Nullable<Text>,
        tags -> Text,
        dashboard_url -> Nullable<Text>,
        last_operation_type -> Nullable<Text>,
        last_operation_state -> Nullable<Text>,
        last_operation_description -> Nullable<Text>,
        broker_operation -> Nullable<Text>,
        last_operation_updated_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    service_bindings (id) {
        id -> BigInt,
        guid -> Text,
        app_guid -> Text,
        service_instance_guid -> Text,
        name -> Nullable<Text>,
        credentials -> Text,
        syslog_drain_url -> Nullable<Text>,
        volume_mounts -> Text,
        last_operation_type -> Nullable<Text>,
        last_operation_state -> Nullable<Text>,
        last_operation_description -> Nullable<Text>,
        broker_operation -> Nullable<Text>,
        last_operation_created_at -> Nullable<Timestamp>,
        last_operation_updated_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        role -> Nullable<Text>,
        prefix -> Nullable<Text>,
        service_key_guid -> Nullable<Text>,
        extended -> Bool,
        name_generated -> Bool,
        credential_binding_guid -> Nullable<Text>,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        guid -> Text,
        kind -> Text,
        resource_guid -> Nullable<Text>,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        run_at -> Timestamp,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    login_failures (id) {
        id -> BigInt,
        user_guid -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        guid -> Text,
        username -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        origin -> Text,
        scopes -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    oauth_clients (id) {
        id -> BigInt,
        client_id -> Text,
        secret_hash -> Nullable<Text>,
        scopes -> Text,
        grant_types -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    org_roles (id) {
        id -> BigInt,
        organization_guid -> Text,
        user_guid -> Text,
        role -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    space_roles (id) {
        id -> BigInt,
        space_guid -> Text,
        user_guid -> Text,
        role -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    service_keys (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        service_instance_guid -> Text,
        credentials -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        role -> Nullable<Text>,
    }
}

diesel::table! {
    registry_secrets (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        space_guid -> Text,
        server -> Text,
        username -> Text,
        password -> Text,
        email -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Bindings per block of 4096 ids, kept by triggers (see the migrations): a block's count
    /// is the sum of its shards.
    service_binding_blocks (block, shard) {
        block -> BigInt,
        shard -> Integer,
        n -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    spaces,
    apps,
    service_brokers,
    services,
    service_plans,
    service_plan_visibilities,
    service_instances,
    service_bindings,
    jobs,
    users,
    login_failures,
    oauth_clients,
    org_roles,
    space_roles,
    service_keys,
    registry_secrets,
);
