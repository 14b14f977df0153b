"""A tqdm class that draws nothing itself and forwards its counts to a row of our rich display.

Libraries we wrap report progress through tqdm (mergekit while merging, huggingface_hub while
downloading). The CLI turns tqdm off globally (TQDM_DISABLE) so their bars cannot garble our
output; where a long step deserves a bar, we hand the library a class made here instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import Progress


def rich_tqdm(progress: Progress | None, label: Callable[[str], str | None]) -> type[Any]:
    """A tqdm subclass whose bars become rows of `progress`.

    `label(desc)` names the row for a tqdm description, or returns None to keep that bar
    hidden (it still counts, so the library behaves as usual).
    """
    import tqdm as tqdm_mod

    class RichTqdm(tqdm_mod.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._row: Any = None  # tqdm's __init__ already refreshes
            kwargs.pop("name", None)  # huggingface_hub's own tqdm takes a name; plain tqdm not
            kwargs["disable"] = False  # TQDM_DISABLE is for the bars tqdm would draw itself
            kwargs["file"] = open("/dev/null", "w")  # noqa: SIM115 - closed in close()
            super().__init__(*args, **kwargs)
            title = label(str(kwargs.get("desc") or ""))
            if progress is not None and title is not None:
                self._row = progress.add_task(title, total=self.total)

        def _sync(self) -> None:
            if self._row is not None and progress is not None:
                progress.update(self._row, completed=self.n, total=self.total)

        def __iter__(self) -> Iterator[Any]:
            # tqdm batches its own counter updates; count items ourselves
            for done, item in enumerate(super().__iter__(), start=1):
                if self._row is not None and progress is not None:
                    progress.update(self._row, completed=done)
                yield item

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            self._sync()
            return out

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            # huggingface_hub grows `total` as it learns file sizes, then refreshes
            super().refresh(*args, **kwargs)
            self._sync()

        def close(self) -> None:
            fp = self.fp
            self._sync()
            super().close()
            with contextlib.suppress(Exception):
                fp.close()

    return RichTqdm
