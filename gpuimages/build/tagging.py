"""Extra names for built images: a registry prefix and opt-in aliases.

The primary tag (`<repository>:<variant name>`) is set by the build; everything here is
an additional name for the same image id.
"""

from __future__ import annotations

import logging

import docker
import docker.errors

from gpuimages.build.engine import built_image, engine_client, engine_errors
from gpuimages.core.reference import check_tag
from gpuimages.facts.registry_address import Registry
from gpuimages.facts.variant import Variant

log = logging.getLogger(__name__)


def alias_tags(variant: Variant, aliases: tuple[str, ...], registry: Registry | None) -> list[str]:
    tags = []
    for alias in aliases:
        check_tag(alias, "--alias")
        tags.append(f"{variant.repository}:{alias}")
        if registry:
            tags.append(registry.tag_for(variant, alias))
    return tags


def add_tags(
    variant: Variant,
    *,
    registry: Registry | None = None,
    aliases: tuple[str, ...] = (),
    client: docker.DockerClient | None = None,
) -> list[str]:
    """Add the registry-prefixed tag and aliases to the image the variant's tag names."""
    for alias in aliases:
        check_tag(alias, "--alias")
    client = client or engine_client()
    image = built_image(variant, client)
    wanted = ([registry.tag_for(variant)] if registry else []) + alias_tags(
        variant, aliases, registry
    )
    for tag in wanted:
        repo, name = tag.rsplit(":", 1)
        with engine_errors(f"could not tag {variant.tag} as {tag}"):
            image.tag(repo, name)
        log.info("tagged %s -> %s", tag, image.id)
    return wanted
