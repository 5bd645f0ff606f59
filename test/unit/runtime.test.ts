// memorySettings: what the "ready" line reports of MALLOC_ARENA_MAX and V8's young generation.
import { expect } from "chai";
import { memorySettings } from "../../src/config/runtime.js";

describe("memorySettings", () => {
  const cases: [string, NodeJS.ProcessEnv, string[], { mallocArenaMax: string | null; maxSemiSpaceMb: number | null }][] = [
    ["nothing set", {}, [], { mallocArenaMax: null, maxSemiSpaceMb: null }],
    ["the bin's defaults", { MALLOC_ARENA_MAX: "2", NODE_OPTIONS: "--max-semi-space-size=4 " }, [], { mallocArenaMax: "2", maxSemiSpaceMb: 4 }],
    ["a later NODE_OPTIONS value wins", { NODE_OPTIONS: "--max-semi-space-size=4 --inspect --max-semi-space-size=16" }, [], { mallocArenaMax: null, maxSemiSpaceMb: 16 }],
    ["the command line wins over NODE_OPTIONS", { NODE_OPTIONS: "--max-semi-space-size=4" }, ["--max-semi-space-size=8"], { mallocArenaMax: null, maxSemiSpaceMb: 8 }],
    ["the space-separated and underscore spellings", {}, ["--max_semi_space_size", "2"], { mallocArenaMax: null, maxSemiSpaceMb: 2 }],
    ["a value that is not a number is ignored", { NODE_OPTIONS: "--max-semi-space-size=4 --max-semi-space-size=big" }, [], { mallocArenaMax: null, maxSemiSpaceMb: 4 }],
    ["other flags are not mistaken for it", { NODE_OPTIONS: "--max-old-space-size=512" }, ["--max-semi-space-size-x=3"], { mallocArenaMax: null, maxSemiSpaceMb: null }],
  ];
  for (const [name, env, argv, want] of cases) {
    it(name, () => {
      expect(memorySettings(env, argv)).to.deep.equal(want);
    });
  }
});
