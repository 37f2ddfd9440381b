//! The AWS SDK service crates cutover calls, re-exported as one crate
//! (`aws_sdk::ec2` is `aws_sdk_ec2`).
//!
//! Why a crate of its own: cargo starts first the crates that the most others
//! wait for, counting crates, not their size. Behind this crate, each SDK
//! crate has one more crate waiting for it than cutover's other leaf
//! dependencies, so a cold build starts aws-sdk-ec2 (about three minutes of
//! compiling on one core, and cutover waits for it) as soon as it can,
//! instead of whenever a tie falls its way; crates/aws-sdk-ec2 puts it ahead
//! of the other SDK crates too. README's Development section has the figures.

pub use aws_sdk_acm as acm;
pub use aws_sdk_autoscaling as autoscaling;
pub use aws_sdk_cloudwatch as cloudwatch;
pub use aws_sdk_elasticache as elasticache;
pub use aws_sdk_elasticloadbalancingv2 as elasticloadbalancingv2;
pub use aws_sdk_route53 as route53;
pub use aws_sdk_s3 as s3;
pub use aws_sdk_sts as sts;
pub use cutover_aws_sdk_ec2::aws_sdk_ec2 as ec2;
