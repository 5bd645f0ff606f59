// The live usage view on a fleet (issue 15 item 5): the model keeps the last event's fleet
// status, and the view says how many sidecars it counts — or that the others' traffic is
// missing while the streaming sidecar cannot hear them (Redis Pub/Sub down).
import React from "react";
import { expect } from "chai";
import { render } from "ink-testing-library";
import { DEFAULT_MONEY } from "../../src/display/format.js";
import { UsageModel } from "../../tui/state/usage.js";
import { UsageView } from "../../tui/components/UsageView.js";
import { counters, T0, usageEvent } from "./fakeApi.js";

function frame(model: UsageModel): string {
  const ui = render(<UsageView snap={model.snapshot()} metric="requests" money={DEFAULT_MONEY} phase="live" error={null} width={120} height={30} />);
  const out = ui.lastFrame() ?? "";
  ui.unmount();
  return out;
}

describe("tui: live usage on a fleet", () => {
  it("no fleet status (a sidecar with its own store): no fleet line", () => {
    const m = new UsageModel();
    m.apply(usageEvent(T0, { total: counters({ requests: 3 }) }));
    expect(m.snapshot().fleet).to.equal(null);
    expect(frame(m)).to.not.include("Fleet");
  });

  it("shows the sidecars counted, then that the others are missing, then recovers", () => {
    const m = new UsageModel();
    m.apply(usageEvent(T0, { fleet: { sidecars: 3, othersMissing: false } }));
    expect(m.snapshot().fleet).to.deep.equal({ sidecars: 3, othersMissing: false });
    expect(frame(m)).to.include("Fleet: 3 sidecars heard");
    m.apply(usageEvent(T0 + 1000, { fleet: { sidecars: 1, othersMissing: true } }));
    expect(frame(m)).to.include("other sidecars' traffic missing");
    m.apply(usageEvent(T0 + 2000, { fleet: { sidecars: 3, othersMissing: false } }));
    expect(frame(m)).to.include("Fleet: 3 sidecars heard");
  });
});
