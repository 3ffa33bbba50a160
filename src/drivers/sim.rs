//! The sim driver.
