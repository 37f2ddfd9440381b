//! aws-sdk-ec2, re-exported one crate further from cutover
//! (`aws_sdk::ec2` comes from here through crates/aws-sdk).
//!
//! Why: among crates ready to build, cargo starts first the one with the
//! most crates waiting on it, transitively. Behind crates/aws-sdk every SDK
//! service crate ties, and the tie went by hash order: in a cold build that
//! was timed, aws-sdk-ec2 was ready at 142 s and started at 255 s, after six
//! smaller SDK crates. It is the one cutover waits for (about three minutes
//! of compiling on one core), and this crate puts one more crate in front of
//! it, so it wins the tie. README's Development section has the figures.

pub use aws_sdk_ec2;
