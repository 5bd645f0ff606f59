// memorySettings: what the "ready" line reports of MALLOC_ARENA_MAX and V8's young generation.
import { expect } from "chai";
import { memorySettings } from "../../src/config/runtime.js";

describe("memorySettings", () => {
  const cases: [string, NodeJS.ProcessEnv, string[], { mallocArenaMax: string | null; maxSemiSpaceMb: number | null; minSemiSpaceMb: number | null }][] = [
    ["nothing set", {}, [], { mallocArenaMax: null, maxSemiSpaceMb: null, minSemiSpaceMb: null }],
    ["the bin's defaults", { MALLOC_ARENA_MAX: "2", NODE_OPTIONS: "--max-semi-space-size=4 " }, [], { mallocArenaMax: "2", maxSemiSpaceMb: 4, minSemiSpaceMb: null }],
    ["a later NODE_OPTIONS value wins", { NODE_OPTIONS: "--max-semi-space-size=4 --inspect --max-semi-space-size=16" }, [], { mallocArenaMax: null, maxSemiSpaceMb: 16, minSemiSpaceMb: null }],
    ["the command line wins over NODE_OPTIONS", { NODE_OPTIONS: "--max-semi-space-size=4" }, ["--max-semi-space-size=8"], { mallocArenaMax: null, maxSemiSpaceMb: 8, minSemiSpaceMb: null }],
    ["the space-separated and underscore spellings", {}, ["--max_semi_space_size", "2"], { mallocArenaMax: null, maxSemiSpaceMb: 2, minSemiSpaceMb: null }],
    ["a value that is not a number is ignored", { NODE_OPTIONS: "--max-semi-space-size=4 --max-semi-space-size=big" }, [], { mallocArenaMax: null, maxSemiSpaceMb: 4, minSemiSpaceMb: null }],
    ["the bin's command-line minimum, beside the maximum", { NODE_OPTIONS: "--max-semi-space-size=4 " }, ["--min-semi-space-size=4"], { mallocArenaMax: null, maxSemiSpaceMb: 4, minSemiSpaceMb: 4 }],
    ["the minimum's spellings and last value", {}, ["--min_semi_space_size", "2", "--min-semi-space-size=6"], { mallocArenaMax: null, maxSemiSpaceMb: null, minSemiSpaceMb: 6 }],
    ["other flags are not mistaken for it", { NODE_OPTIONS: "--max-old-space-size=512" }, ["--max-semi-space-size-x=3"], { mallocArenaMax: null, maxSemiSpaceMb: null, minSemiSpaceMb: null }],
  ];
  for (const [name, env, argv, want] of cases) {
    it(name, () => {
      expect(memorySettings(env, argv)).to.deep.equal(want);
    });
  }
});
