"""Docker failures as the agent's API errors (see ``shared/errors.py`` for the status codes).

DockerUnavailable     (503) dockerd did not answer, or answered with a server error
ImageUnavailable      (400) the image is not on the node and could not be pulled
ContainerMissing      (404) no container of that name
ContainerConflict     (409) the container is in a state that forbids the operation
NetworkUnsafe         (503) the agent's network exists but lets containers talk
"""

from __future__ import annotations

from shared.errors import Conflict, InvalidRequest, NotFound, UpstreamUnavailable


class DockerUnavailable(UpstreamUnavailable):
    """dockerd could not do what was asked for a reason that is not the caller's."""


class ImageUnavailable(InvalidRequest):
    """The image is not on this node and pulling it failed."""


class ContainerMissing(NotFound):
    """There is no container of that name."""


class ContainerConflict(Conflict):
    """The container exists but its state forbids the operation (e.g. a name taken)."""


class NetworkUnsafe(DockerUnavailable):
    """The agent's bridge network exists with settings that would break isolation."""
