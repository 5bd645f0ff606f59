import { FakeAdminApi, makeKey } from "./fakeApi.js";
import { KEY, renderApp } from "./render.js";
it("x", async () => { const ui = await renderApp(new FakeAdminApi({ keys: [makeKey(1, { name: "a" })] }), { columns: 120 });
    await ui.press("2");
    await ui.waitFor((x) => x.includes("Used (all time)"));
    await ui.press(KEY.enter);
 await new Promise(r=>setTimeout(r,300)); console.log(JSON.stringify(ui.frame().split("\n").slice(-4))); ui.unmount(); });
