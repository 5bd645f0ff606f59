// What every screen component gets from the shell (tui/App.tsx).
import type { CommandState } from "../keys/commands.js";
import type { UiAction } from "../state/appState.js";

export interface ScreenProps {
  /** For disabled reasons (the help bar, a pressed disabled command). */
  readonly state: CommandState;
  /** The screen takes keys (no dialog is open over it). */
  readonly active: boolean;
  readonly dispatch: (a: UiAction) => void;
  /** Shows why a pressed command is disabled. */
  readonly onDisabled: (message: string) => void;
  readonly width: number;
  readonly height: number;
}

/** The first row of a scrolled list: kept by the shell so it survives switching views. */
export interface ScrollMemory {
  current: number;
  /** How many rows the window showed at its last render (the key table sets it; live usage reads it). */
  rows?: number;
}
