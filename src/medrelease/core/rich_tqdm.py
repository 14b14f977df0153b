"""tqdm classes that draw nothing themselves and forward their counts to our rich display.

Libraries we wrap report progress through tqdm (mergekit while merging, huggingface_hub while
downloading, lm-eval while evaluating). The CLI turns tqdm off globally (TQDM_DISABLE) so their
bars cannot garble our output; where a long step deserves a bar, we hand the library a class
made here instead: `rich_tqdm` gives each bar a row of its own, `counting_tqdm` hands the
counts to a callback (e.g. to drive a row that already exists).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import Progress


def counting_tqdm(on_change: Callable[[Any], None]) -> type[Any]:
    """A tqdm subclass that draws nothing, whatever TQDM_DISABLE or `disable=` say, and calls
    `on_change(bar)` whenever its count or total changes (`bar.count`, `bar.total`,
    `bar.desc`, `bar.closed`)."""
    import tqdm as tqdm_mod

    class CountingTqdm(tqdm_mod.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.count = 0
            self.closed = False
            self._ready = False  # tqdm's __init__ already refreshes
            kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; plain tqdm not
            kwargs["disable"] = False  # TQDM_DISABLE is for the bars tqdm would draw itself
            kwargs["file"] = open("/dev/null", "w")  # noqa: SIM115 - closed in close()
            super().__init__(*args, **kwargs)
            self._ready = True
            self._changed()

        def _changed(self) -> None:
            if self._ready:
                on_change(self)

        def __iter__(self) -> Iterator[Any]:
            # tqdm batches its own counter updates while iterating; count items ourselves
            for done, item in enumerate(super().__iter__(), start=1):
                self.count = done
                self._changed()
                yield item

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            self.count = max(self.count, self.n)
            self._changed()
            return out

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            # huggingface_hub grows `total` as it learns file sizes, then refreshes
            super().refresh(*args, **kwargs)
            self._changed()

        def close(self) -> None:
            if self.closed:
                return
            fp = self.fp
            self.count = max(self.count, self.n)
            self.closed = True
            self._changed()
            super().close()
            with contextlib.suppress(Exception):
                fp.close()

    return CountingTqdm


def rich_tqdm(progress: Progress | None, label: Callable[[str], str | None]) -> type[Any]:
    """A tqdm subclass whose bars become rows of `progress`.

    `label(desc)` names the row for a tqdm description, or returns None to keep that bar
    hidden (it still counts, so the library behaves as usual).
    """
    rows: dict[int, Any] = {}

    def on_change(bar: Any) -> None:
        if progress is None:
            return
        if id(bar) not in rows:
            title = label(str(bar.desc or ""))
            rows[id(bar)] = None if title is None else progress.add_task(title, total=bar.total)
        row = rows[id(bar)]
        if row is not None:
            progress.update(row, completed=bar.count, total=bar.total)
        if bar.closed:
            rows.pop(id(bar), None)

    return counting_tqdm(on_change)
