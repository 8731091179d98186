//! Bearer-token authentication (UAA-style JWTs) and the caller identity handlers work with.

pub mod password;
pub mod token;

pub use token::{Claims, TokenIssuer, TokenVerifier};

pub const SCOPE_ADMIN: &str = "cloud_controller.admin";
pub const SCOPE_ADMIN_READ_ONLY: &str = "cloud_controller.admin_read_only";
pub const SCOPE_GLOBAL_AUDITOR: &str = "cloud_controller.global_auditor";
pub const SCOPE_READ: &str = "cloud_controller.read";
pub const SCOPE_WRITE: &str = "cloud_controller.write";

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The UAA user id (`user_id`, else `sub` of a user token); None for client tokens.
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

impl Actor {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has_scope(SCOPE_ADMIN)
    }

    pub fn is_admin_read_only(&self) -> bool {
        self.has_scope(SCOPE_ADMIN_READ_ONLY)
    }

    pub fn is_global_auditor(&self) -> bool {
        self.has_scope(SCOPE_GLOBAL_AUDITOR)
    }

    /// Sees every resource (lists are not filtered by role).
    pub fn reads_everything(&self) -> bool {
        self.is_admin() || self.is_admin_read_only() || self.is_global_auditor()
    }

    /// Sees every credential.
    pub fn reads_all_secrets(&self) -> bool {
        self.is_admin() || self.is_admin_read_only()
    }

    /// May call read endpoints at all.
    pub fn can_read(&self) -> bool {
        self.reads_everything() || self.has_scope(SCOPE_READ)
    }

    /// May call write endpoints at all (roles decide where).
    pub fn can_write(&self) -> bool {
        self.is_admin() || self.has_scope(SCOPE_WRITE)
    }
}
