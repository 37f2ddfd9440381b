//! Who the credentials belong to.

use serde::Serialize;

use super::{AwsResult, Clients, sdk_error};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

pub async fn identity(clients: &Clients) -> AwsResult<Identity> {
    let r = clients.sts.get_caller_identity().send().await.map_err(|e| sdk_error("GetCallerIdentity", e))?;
    Ok(Identity { account: r.account().unwrap_or_default().into(), arn: r.arn().unwrap_or_default().into() })
}
