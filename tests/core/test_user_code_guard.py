"""The one guard around the user's code: one line naming what failed, the exception and the user's file:line;
SystemExit and a KeyboardInterrupt raised by that code are its failures; an interrupt the user sends is not."""

from __future__ import annotations

import os
import signal
import sys
import textwrap

import pytest
import torch

from percepiano_parity.core.errors import UsageError, UserCodeError, call_user, user_code
from percepiano_parity.core.interrupts import Interrupted, signals_as_interrupted


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the 'user' in a file of its own, so frames can be told apart from ours and torch's."""
    (tmp_path / "users_code.py").write_text(textwrap.dedent('''
        import sys
        import torch

        def raises(text):
            raise RuntimeError(text)

        def exits(code=0):
            sys.exit(code)

        def ctrl_c():
            raise KeyboardInterrupt

        def torch_fails():
            return torch.zeros(2, 3) @ torch.zeros(4, 5)

        def nested(fn):
            return fn()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("users_code", None)
    import users_code

    return users_code


def test_a_failure_names_the_callback_the_exception_and_the_users_line(user_module):
    with pytest.raises(UserCodeError) as info:
        call_user("factory", user_module.raises, "cannot build\nthe model", context="m.py:build")
    message = str(info.value)
    assert message.startswith("your factory m.py:build failed: RuntimeError: cannot build the model (at ")
    assert message.endswith("users_code.py:6, in raises)")
    assert "\n" not in message and isinstance(info.value, UsageError)
    assert isinstance(info.value.original, RuntimeError)


def test_an_error_inside_torch_points_at_the_users_line_that_called_it(user_module):
    with pytest.raises(UserCodeError, match=r"your forward failed: RuntimeError: .*users_code.py:15, in torch_fails\)"):
        call_user("forward", user_module.torch_fails)


def test_sys_exit_in_user_code_is_a_failure_not_a_silent_end(user_module):
    with pytest.raises(UserCodeError, match=r"your factory failed: it called sys.exit\(0\) \(at .*users_code.py:9"):
        call_user("factory", user_module.exits)
    with pytest.raises(UserCodeError, match=r"it called sys.exit\('bye'\)"):
        call_user("adapter.recipe", user_module.exits, "bye")


def test_keyboard_interrupt_raised_by_code_is_its_failure_when_signals_are_ours(user_module):
    with signals_as_interrupted(), pytest.raises(UserCodeError, match="it raised KeyboardInterrupt"):
        call_user("adapter.forward", user_module.ctrl_c)
    # without our handlers a Ctrl-C cannot be told from code raising it: it ends the run as Python would
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with pytest.raises(KeyboardInterrupt):
            call_user("adapter.forward", user_module.ctrl_c)


def test_an_interrupt_the_user_sends_passes_through(user_module):
    def send_sigint() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            pass

    with signals_as_interrupted(), pytest.raises(Interrupted) as info:
        call_user("forward", user_module.nested, send_sigint)
    assert info.value.exit_code == 130 and not isinstance(info.value, UsageError)


def test_the_innermost_guard_names_the_failure_and_usage_errors_pass(user_module):
    def outer() -> None:
        call_user("adapter.mapping", user_module.raises, "inner")

    with pytest.raises(UserCodeError, match="your adapter.mapping failed: RuntimeError: inner"):
        call_user("adapter.recipe", outer)
    with pytest.raises(UsageError, match="^already one line$"), user_code("factory"):
        raise UsageError("already one line")


def test_without_a_user_frame_the_callable_gives_the_location():
    with pytest.raises(UserCodeError, match=r"your forward failed: ZeroDivisionError"):
        call_user("forward", lambda: 1 / 0)
    with pytest.raises(UserCodeError) as info:
        call_user("forward", torch.ones(2).__mul__, torch.ones(3))  # fails inside torch, no frame of the user's
    assert str(info.value).startswith("your forward failed: RuntimeError: The size of tensor a (2)")
