//! Engine API failures mapped onto [`EngineError`] kinds, in one place.
//!
//! The daemon reports swarmkit's gRPC codes as HTTP statuses (moby
//! `daemon/server/httpstatus/status.go`): `InvalidArgument` and `FailedPrecondition` become
//! 400, `NotFound` 404, `AlreadyExists` 409, `Unimplemented` 501, `Unavailable` 503, and
//! `Unknown` or `DeadlineExceeded` 500. Some kinds can only be told apart by the message, so
//! both are read.
//! Whether an object is gone is decided by [`is_not_found`] alone, for every caller (the
//! swarm backend and the dind driver's calls to the host engine).
//! The kinds match what the sim driver returns for the same refusals.

use crate::engine::EngineError;
use bollard::errors::Error as BollardError;

/// Messages that mean the managers have no leader (quorum is lost).
const NO_LEADER_MESSAGES: [&str; 3] = [
    "does not have a leader",
    "context deadline exceeded",
    "no elected cluster leader",
];

/// Messages of a 503 that mean this engine cannot serve the control API.
const NOT_MANAGER_MESSAGES: [&str; 2] = ["not a swarm manager", "not part of a swarm"];

/// The gRPC status text swarmkit puts in a message for an object that does not exist.
const GRPC_NOT_FOUND: &str = "code = NotFound";

/// Whether an engine answer (HTTP `status` and `message`) says the object does not exist,
/// whatever the status: a 404, or swarmkit's gRPC `NotFound` passed through with another
/// status (two racing removals of one network answer HTTP 500 `rpc error: code = NotFound`).
pub(crate) fn is_not_found(status: u16, message: &str) -> bool {
    status == 404 || message.contains(GRPC_NOT_FOUND)
}

/// [`is_not_found`] of a bollard error: false for anything but an engine answer.
pub(crate) fn is_not_found_answer(error: &BollardError) -> bool {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => is_not_found(*status_code, message),
        _ => false,
    }
}

/// Maps an HTTP status and the engine's error message to an [`EngineError`].
pub(crate) fn classify(status: u16, message: &str) -> EngineError {
    let message = message.trim().to_string();
    if is_not_found(status, &message) {
        return EngineError::NotFound(message);
    }
    if message.contains("update out of sequence") {
        return EngineError::OutOfSequence(message);
    }
    if message.contains("loss of quorum") {
        return EngineError::QuorumLoss(message);
    }
    if status >= 500 && NO_LEADER_MESSAGES.iter().any(|m| message.contains(m)) {
        return EngineError::NoLeader(message);
    }
    let not_manager = match status {
        403 => message.contains("manager"),
        503 => NOT_MANAGER_MESSAGES.iter().any(|m| message.contains(m)),
        _ => false,
    };
    match status {
        _ if not_manager => EngineError::NotManager(message),
        400 | 403 | 501 => EngineError::Refused(message),
        503 if message.contains("already part of a swarm") => EngineError::Refused(message),
        409 => EngineError::Conflict(message),
        _ => EngineError::Other(format!("engine answered HTTP {status}: {message}")),
    }
}

/// Maps a bollard error: server answers by [`classify`], transport failures to
/// [`EngineError::Unreachable`], anything else to [`EngineError::Other`].
pub(crate) fn from_bollard(error: BollardError) -> EngineError {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => classify(status_code, &message),
        BollardError::RequestTimeoutError => {
            EngineError::Unreachable("the engine did not answer in time".to_string())
        }
        BollardError::IOError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::SocketNotFoundError(_) => EngineError::Unreachable(with_causes(&error)),
        BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. } => {
            EngineError::Other(format!("unexpected answer from the engine: {error}"))
        }
        other => EngineError::Other(with_causes(&other)),
    }
}

/// The error's text followed by each cause's that it does not already say (`client error
/// (Connect): invalid peer certificate: UnknownIssuer`), so the reason is never lost.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> EngineError {
        from_bollard(BollardError::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        })
    }

    /// An error that says only what failed, with its cause behind it.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn transport_failures_keep_their_cause() {
        let x509 = Wrapped(
            "invalid peer certificate: UnknownIssuer",
            Some(Box::new(Wrapped("UnknownIssuer", None))),
        );
        let connect = Wrapped("client error (Connect)", Some(Box::new(x509)));
        let error = from_bollard(BollardError::IOError {
            err: std::io::Error::other(connect),
        });
        assert!(
            matches!(
                &error,
                EngineError::Unreachable(m) if m == "client error (Connect): invalid peer certificate: UnknownIssuer"
            ),
            "{error:?}"
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert!(matches!(
            server(404, "service web not found"),
            EngineError::NotFound(_)
        ));
        assert!(matches!(
            server(
                409,
                "rpc error: code = AlreadyExists desc = name conflicts with an existing object"
            ),
            EngineError::Conflict(_)
        ));
        assert!(matches!(
            server(
                400,
                "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm"
            ),
            EngineError::Refused(_)
        ));
        assert!(matches!(
            server(
                501,
                "rpc error: code = Unimplemented desc = service mode change is not allowed"
            ),
            EngineError::Refused(_)
        ));
        assert!(matches!(
            server(
                500,
                "rpc error: code = Unknown desc = can't remove member from the raft: this would result in a loss of quorum"
            ),
            EngineError::QuorumLoss(_)
        ));
        assert!(matches!(
            server(418, "teapot"),
            EngineError::Other(m) if m.contains("418") && m.contains("teapot")
        ));
    }

    #[test]
    fn not_found_is_gone_whatever_the_status() {
        // Two racing removals of one network: the loser gets HTTP 500 with gRPC NotFound.
        let raced = "rpc error: code = NotFound desc = network 3x9 not found";
        assert!(matches!(server(500, raced), EngineError::NotFound(_)));
        assert!(is_not_found_answer(
            &BollardError::DockerResponseServerError {
                status_code: 500,
                message: raced.to_string(),
            }
        ));
        assert!(is_not_found_answer(
            &BollardError::DockerResponseServerError {
                status_code: 404,
                message: "No such container: n1".to_string(),
            }
        ));
        assert!(!is_not_found_answer(
            &BollardError::DockerResponseServerError {
                status_code: 500,
                message: "rpc error: code = Unknown desc = network is in use".to_string(),
            }
        ));
        assert!(!is_not_found_answer(&BollardError::RequestTimeoutError));
    }

    #[test]
    fn out_of_sequence_is_recognised() {
        assert_eq!(
            server(
                500,
                "rpc error: code = Unknown desc = update out of sequence\n"
            ),
            EngineError::OutOfSequence(
                "rpc error: code = Unknown desc = update out of sequence".to_string()
            )
        );
    }

    #[test]
    fn not_a_manager_and_not_in_a_swarm() {
        for message in [
            "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
            "This node is not part of a swarm",
        ] {
            assert!(
                matches!(server(503, message), EngineError::NotManager(_)),
                "{message}"
            );
        }
        assert!(matches!(
            server(
                403,
                "Cannot create a multi-host network from a worker node. Please create the network from a manager node."
            ),
            EngineError::NotManager(_)
        ));
        assert!(matches!(
            server(
                503,
                "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."
            ),
            EngineError::Refused(_)
        ));
    }

    #[test]
    fn lost_quorum_is_no_leader() {
        for (status, message) in [
            (503, "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."),
            (500, "rpc error: code = DeadlineExceeded desc = context deadline exceeded"),
            (500, "rpc error: code = Unknown desc = raft: no elected cluster leader"),
        ] {
            assert!(
                matches!(server(status, message), EngineError::NoLeader(_)),
                "{message}"
            );
        }
    }

    #[test]
    fn transport_failures_are_unreachable() {
        let refused = BollardError::IOError {
            err: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        };
        assert!(matches!(from_bollard(refused), EngineError::Unreachable(_)));
        assert!(matches!(
            from_bollard(BollardError::SocketNotFoundError("/tmp/none.sock".into())),
            EngineError::Unreachable(_)
        ));
        assert!(matches!(
            from_bollard(BollardError::RequestTimeoutError),
            EngineError::Unreachable(_)
        ));
        let bad_json = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(matches!(
            from_bollard(BollardError::JsonSerdeError { err: bad_json }),
            EngineError::Other(_)
        ));
    }
}
