"""``inspect --preview``: an input's first records built in memory, through the build's own code."""

from __future__ import annotations

from itertools import islice

from tokenizers import Tokenizer

from sftprep.config import BuildConfig
from sftprep.errors import DataError, counted
from sftprep.manifest import preview_manifest
from sftprep.readers import InputFile, Record, expand_inputs
from sftprep.tokenizer import load_tokenizer
from sftprep.transform import ChatTransform, bind_transform, resolve_templates
from sftprep.view.source import Rows
from sftprep.view.turns import Turns


def preview(config: BuildConfig, records: int = 100) -> tuple[Rows, Tokenizer, list[str]]:
    """Build the first ``records`` records of ``config.inputs`` in memory, writing nothing.

    The rows come from the build's own transform (template + encoder), so they
    are exactly what ``sftprep build`` with the same options would write
    (unpacked and unpadded: ``--pack`` and ``--pad-to`` are not previewed).
    Chat rows know their messages' roles (``rows.turns``).

    Returns:
        The rows, the tokenizer they were made with, and one note per rejected record.

    Raises:
        SftprepError: bad options, inputs, template or tokenizer, as for a build.
    """
    config.check()
    info = load_tokenizer(config.tokenizer, eos=config.eos)
    batch: list[Record] = []
    for name in expand_inputs(config.inputs):
        with InputFile(name, max_record_bytes=config.max_record_bytes, format=config.input_format) as f:
            batch.extend(islice(f.records(), records - len(batch)))
        if len(batch) >= records:
            break
    first = next((r for r in batch if r.error is None), None)
    if first is None:
        detail = f"; the first: {batch[0].error}" if batch else ""
        raise DataError(
            f"none of the first {counted(len(batch), 'record')} of {', '.join(config.inputs)} can be read{detail}"
        )
    template, chat_spec = resolve_templates(config)
    bound = bind_transform(config, info, first, template=template, chat_spec=chat_spec)
    result = bound.transform(batch)
    manifest, convention = preview_manifest(config, info, bound.template.name, result.counts.as_dict())
    notes = [f"{error} (skipped)" for _, error in result.rejects]
    columns = result.batches[0].schema.names if result.batches else []
    name = f"preview of {', '.join(config.inputs)}"
    rows = Rows(name, convention, manifest, memory=result.batches, columns=columns)
    if isinstance(bound.transform, ChatTransform):  # the records are here: the roles come directly
        rows.turns = Turns(
            bound.transform, records={(r.source, r.number): r for r in batch if r.error is None}
        )
    return rows, info.tokenizer, notes
