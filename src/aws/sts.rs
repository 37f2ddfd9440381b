//! Who the credentials belong to.

use serde::Serialize;

use super::{AwsResult, Clients, sdk_error};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    /// When credentials that cannot be refreshed (keys in the environment)
    /// expire, RFC 3339; absent when they refresh or never expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

pub async fn identity(clients: &Clients) -> AwsResult<Identity> {
    let r = clients.sts.get_caller_identity().send().await.map_err(|e| sdk_error("GetCallerIdentity", e))?;
    let expires_at = clients
        .fixed_keys
        .as_ref()
        .and_then(|f| f.expires_at)
        .and_then(|t| aws_smithy_types::DateTime::from(t).fmt(aws_smithy_types::date_time::Format::DateTime).ok());
    Ok(Identity {
        account: r.account().unwrap_or_default().into(),
        arn: r.arn().unwrap_or_default().into(),
        expires_at,
    })
}
