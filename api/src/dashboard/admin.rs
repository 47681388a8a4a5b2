//! Who is looking at a dashboard page: what the pages show of the signed-in admin and what they may do. Sessions
//! (`session`) produce it; pages (`render`) read it.

use uuid::Uuid;

/// A signed-in admin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminSession {
    #[serde(skip)]
    pub user_id: Uuid,
    #[serde(skip)]
    pub session_id: Uuid,
    pub email: String,
    pub role: String,
    pub readonly: bool,
    #[serde(skip)]
    pub csrf: String,
    #[serde(skip)]
    pub ip: Option<String>,
}
