//! ACM: what a listener's certificate covers, and until when.

use crate::analysis::parity::Certificate;

use super::sdk_error;

/// DescribeCertificate of `arn`. Never fails: what could not be read (an IAM
/// server certificate, a denied call) is the certificate's `error`, so it is
/// shown as not checked, never as covering.
pub async fn certificate(acm: &aws_sdk::acm::Client, arn: &str) -> Certificate {
    let mut out = Certificate { arn: arn.to_string(), ..Certificate::default() };
    if arn.split(':').nth(2).is_none_or(|service| service != "acm") {
        out.error = Some("not an ACM certificate (an IAM server certificate?), so its names are not read".into());
        return out;
    }
    match acm.describe_certificate().certificate_arn(arn).send().await {
        Ok(resp) => match resp.certificate() {
            Some(c) => {
                let mut names: Vec<String> = c.domain_name().into_iter().map(str::to_string).collect();
                for n in c.subject_alternative_names() {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                out.names = names;
                out.status = c.status().map(|s| s.as_str().to_string());
                out.kind = c.r#type().map(|t| t.as_str().to_string());
                let time = |t: &aws_smithy_types::DateTime| {
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(t.secs()).ok()?);
                    Some(crate::time::rfc3339(t))
                };
                out.not_before = c.not_before().and_then(time);
                out.not_after = c.not_after().and_then(time);
            }
            None => out.error = Some("ACM answered without the certificate".into()),
        },
        Err(e) => out.error = Some(sdk_error("DescribeCertificate", e).to_string()),
    }
    out
}
