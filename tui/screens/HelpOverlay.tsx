// The `?` screen over everything: every binding (tui/components/HelpScreen.tsx), scrolled
// with the list keys, closed with esc, ? or q.
import type { ReactNode } from "react";
import { HelpScreen, helpLines } from "../components/HelpScreen.js";
import { PRIORITY, useCommandLayer } from "../keys/keypress.js";
import type { Move } from "../state/appState.js";
import type { ScreenProps } from "./types.js";

export interface HelpOverlayProps extends Omit<ScreenProps, "active"> {
  readonly scroll: number;
  readonly page: number;
}

export function HelpOverlay(props: HelpOverlayProps): ReactNode {
  const { state, dispatch, onDisabled, width, height } = props;
  // The same measure as HelpScreen: its title and its help bar take two lines.
  const max = Math.max(0, helpLines(state).length - Math.max(1, height - 2));
  const scroll = (move: Move): void => dispatch({ type: "help.scroll", move, max });
  useCommandLayer({
    scopes: ["help", "list"],
    state,
    priority: PRIORITY.dialog,
    modal: true,
    onDisabled,
    actions: {
      "help.close": () => dispatch({ type: "close" }),
      "nav.up": () => scroll(-1),
      "nav.down": () => scroll(1),
      "nav.top": () => scroll("top"),
      "nav.bottom": () => scroll("bottom"),
      "nav.pageUp": () => scroll(-props.page),
      "nav.pageDown": () => scroll(props.page),
    },
  });
  return <HelpScreen state={state} width={width} height={height} scroll={props.scroll} />;
}
