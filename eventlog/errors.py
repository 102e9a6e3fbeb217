"""The Kafka plumbing's errors; domain outcomes are events, never these. Their root,
`KatagateError`, is the project's one exception root (`schemas.errors`)."""

from katagate.schemas.errors import KatagateError

__all__ = ["BrokerError", "ConsumerFailed", "KafkaUnavailable", "KatagateError", "TopicError"]


class BrokerError(KatagateError):
    """The local broker could not be fetched, formatted, started or stopped."""


class TopicError(KatagateError):
    """A topic is missing, or exists with a layout that contradicts its specification."""


class KafkaUnavailable(KatagateError):
    """The cluster did not answer within the bound we were given."""


class ConsumerFailed(KafkaUnavailable):
    """The consumer hit a fatal error (a static member fenced when the group coordinator came
    back from a crash, say): it never reads again, and only a new consumer can go on."""


class ReadStalled(KafkaUnavailable):
    """A read to the end got no record for its whole deadline while short of its end."""
