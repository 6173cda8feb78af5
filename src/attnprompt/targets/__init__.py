"""Target models that answer (image, prompt) pairs for evaluation, and their answer cache."""

from attnprompt.targets.cache import AnswerCache, image_digest
from attnprompt.targets.openai_endpoint import OpenAIEndpointTarget, encode_image_data_url

__all__ = ["AnswerCache", "OpenAIEndpointTarget", "encode_image_data_url", "image_digest"]
