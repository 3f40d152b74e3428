"""Converters for public Azure traces into our trace format (one module per source format).

See ``workloads.azure_llm`` (Azure LLM inference trace 2023) and ``workloads.azure_functions``
(Azure Functions 2019 invocation counts) for each format's model-assignment rule.
"""

from __future__ import annotations

from workloads.azure_functions import busiest_functions, convert_azure_functions
from workloads.azure_llm import convert_azure_llm, read_azure_llm

FORMATS = ("azure-llm", "azure-functions")

__all__ = ["FORMATS", "busiest_functions", "convert_azure_functions", "convert_azure_llm", "read_azure_llm"]
