"""The guard's prompt: one instruction (prompts/guard_instruction.txt) with optional numbered rules and
an optional system message, from the config's `guard_prompt` section. The exports teach a guard with
it (tasks/data/splits.py) and the eval flow asks guards with it (tasks/evaluation/guard.py): both build their messages
here, so a trained guard is evaluated with exactly the prompt it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from libra.tasks.core.config import FactoryConfig
from libra.tasks.core.ids import content_hash
from libra.tasks.core.prompts import frame_nonce, load_rules, load_template

TEMPLATE = "guard_instruction.txt"


@dataclass(frozen=True)
class GuardInstruction:
    rules: tuple[str, ...] = ()
    system_prompt: str | None = None

    @staticmethod
    def from_config(cfg: FactoryConfig) -> GuardInstruction:
        return GuardInstruction(rules=load_rules(cfg, "guard_prompt.rules"),
                                system_prompt=cfg.guard_prompt.system_prompt or None)

    @property
    def version(self) -> str:
        """The template's content hash, plus the hashes of the rules and the system message in use."""
        version = load_template(TEMPLATE).version
        if self.rules:
            version += "+rules@" + content_hash(self.rules, length=12)
        if self.system_prompt:
            version += "+system@" + content_hash(self.system_prompt, length=12)
        return version

    def user_turn(self, query: str, response: str) -> str:
        return load_template(TEMPLATE).render(query=query, response=response, rules=self.rules,
                                              nonce=frame_nonce(query, response))

    def messages(self, query: str, response: str) -> list[dict[str, str]]:
        """The conversation a guard sees, up to (not including) its answer."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": self.user_turn(query, response)}]

    def describe(self) -> dict[str, object]:
        """What an export manifest records of the prompt (and the eval flow compares)."""
        return {"version": self.version, "rules": list(self.rules), "system_prompt": self.system_prompt}
